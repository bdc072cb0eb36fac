"""Fit an nrt monitor on a tile's stable history, block by block.

Memory: the fit loads and fits one square block of ``monitor.block_size`` pixels a side at
a time (nrt needs ~30-40 bytes per pixel-date while fitting), so the peak does not grow
with the tile size.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pystac
import xarray as xr

from ..acquisitions import by_solar_day, version_label
from ..config import without_access_keys
from ..grid import Tile
from ..stac import NoDataError, load_reflectance, spectral_index
from ..state import FitRecord, Ledger, MonitorMember, TileState, software_versions
from .build import build_monitor, consensus_k, fit_monitor, member_configs, needed_bands

log = logging.getLogger(__name__)


def _blocks(shape: tuple[int, int], size: int):
    for r in range(0, shape[0], size):
        for c in range(0, shape[1], size):
            yield slice(r, min(r + size, shape[0])), slice(c, min(c + size, shape[1]))


def fit_key(cfg: dict, tile_id: str, mask: np.ndarray, items: Sequence[pystac.Item]) -> str:
    """SHA-256 (hex) of what a tile's fit is made from: the fit's config sections ``cfg``
    (the rule's fit slice: grid, source, history, index, monitor, consensus; of ``stac``
    all but :data:`forestwatch.config.STAC_ACCESS_KEYS`), the tile, the forest mask's
    content (uint8 array; a mask edited by hand changes it) and the history items with
    their versions (an item published late into the history period, or reprocessed,
    changes it). Stored as :attr:`FitRecord.made_from`; a fitted state with the same key
    is kept instead of fitted again."""
    h = hashlib.sha256()
    h.update(json.dumps(without_access_keys(cfg), sort_keys=True, default=str).encode())
    h.update(tile_id.encode())
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    h.update(str(mask.shape).encode())
    h.update(mask.tobytes())
    for entry in sorted(f"{it.id}@{version_label(it)}" for it in items):
        h.update(entry.encode())
    return h.hexdigest()


def fit_tile(
    tile: Tile,
    items: Sequence[pystac.Item],
    mask: np.ndarray,
    cfg: dict,
    loader: Callable[..., xr.Dataset] = load_reflectance,
    threads: int = 1,
    *,
    classify_mask: tuple[Sequence[str], Callable[[xr.Dataset], np.ndarray]] | None = None,
) -> TileState:
    """Fit the configured monitor (every member of a consensus, from one read of the bands
    per block) on ``items`` (the history) for ``tile``.

    ``mask`` is the tile's forest mask (uint8, 1 = forest, tile shape). With
    ``classify_mask`` (the bands a forest rule reads and its classifier of a block's
    cube, :func:`forestwatch.forest_mask.rule_classifier`), ``mask`` is filled here
    instead, block by block, from the same read as the fit: the history is read once for
    the mask and the fit. Raises :class:`NoDataError` when there is no acquisition to fit
    on.
    """
    if not items:
        raise NoDataError(
            f"tile {tile.id}: no Sentinel-2 acquisition between {cfg['history']['start']} and "
            f"{cfg['history']['end']} with eo:cloud_cover < {cfg['stac']['max_cloud_cover']}. "
            "Widen history.start/end or raise stac.max_cloud_cover."
        )
    if mask.shape != tile.shape:
        raise ValueError(f"tile {tile.id}: mask shape {mask.shape} != tile shape {tile.shape}")
    members = member_configs(cfg)
    # one read of the bands every member needs, per block
    bands = list(dict.fromkeys(b for m in members for b in needed_bands(m)))
    block = cfg["monitor"]["block_size"]
    fitted = [_Fitted() for _ in members]
    unreadable: list[dict] = []  # assets skipped by stac.on_unreadable_asset: skip
    for rows, cols in _blocks(tile.shape, block):
        gbox = tile.geobox[rows, cols]
        if classify_mask is not None:
            # the mask rule's bands with the fit's, in one read; the rule's own go after
            rule_bands, classify = classify_mask
            cube = loader(items, gbox, list(dict.fromkeys([*bands, *rule_bands])),
                          cfg["stac"], threads=threads)
            mask[rows, cols] = classify(cube)
            cube = cube[bands]
        sub_mask = mask[rows, cols]
        if not (sub_mask == 1).any():
            continue  # nothing to monitor here; arrays keep their zero fill
        if classify_mask is None:
            cube = loader(items, gbox, bands, cfg["stac"], threads=threads)
        collect_unreadable(unreadable, cube)
        indices: dict[str, xr.DataArray] = {}
        for member, out in zip(members, fitted, strict=True):
            if member["index"] not in indices:
                index = spectral_index(cube, member["index"])
                # nrt IQR needs C order
                indices[member["index"]] = index.copy(data=np.ascontiguousarray(index.values))
            index = indices[member["index"]]
            monitor = build_monitor(member["monitor"], sub_mask)
            try:
                fit_monitor(monitor, member, index, cube, threads)
            except ValueError as err:
                if "no time-series with sufficient" not in str(err):
                    raise
                # every forest pixel of the block is too cloudy to fit: nrt class 4
                log.warning("tile %s: block rows %d-%d cols %d-%d has too few clear "
                            "observations for the %s %s monitor (%s); its forest pixels are "
                            "marked 4 (not enough observations)", tile.id, rows.start,
                            rows.stop, cols.start, cols.stop, member["index"],
                            member["monitor"]["class"], err)
                out.cloudy_blocks.append((rows, cols))
                continue
            _place_block(out.full, out.scalars, monitor, rows, cols, tile.shape)
            out.blocks += 1
            log.info("tile %s: fitted the %s %s monitor on block rows %d-%d cols %d-%d on %d "
                     "dates", tile.id, member["index"], member["monitor"]["class"],
                     rows.start, rows.stop, cols.start, cols.stop, index.sizes["time"])
    if all(f.blocks == 0 for f in fitted) and any(f.cloudy_blocks for f in fitted):
        raise NoDataError(
            f"tile {tile.id}: no forest pixel has enough clear observations between "
            f"{cfg['history']['start']} and {cfg['history']['end']} to fit the model "
            f"({len(items)} items searched). The period is too cloudy or too short: widen "
            "history, raise stac.max_cloud_cover, or check stac.valid_scl_classes."
        )
    state_members = [MonitorMember(index=member["index"],
                                   monitor=out.assemble(member, mask, tile),
                                   monitor_config={"class": member["monitor"]["class"],
                                                   "params": member["monitor"]["params"],
                                                   "fit": member["monitor"]["fit"]})
                     for member, out in zip(members, fitted, strict=True)]
    by_day = by_solar_day(items)
    ledger = Ledger(fit=FitRecord(
        start=str(cfg["history"]["start"]), end=str(cfg["history"]["end"]),
        days=[str(d) for d in by_day], items=[it.id for d in by_day for it in by_day[d]],
        unreadable=unreadable))
    return TileState(
        members=state_members, crs=tile.crs, transform=tile.transform, tile_id=tile.id,
        agree=consensus_k(cfg), ledger=ledger, software=software_versions(),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


@dataclass
class _Fitted:
    """One member's fitted blocks, gathered into full-tile arrays."""

    full: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: dict[str, object] = field(default_factory=dict)
    blocks: int = 0
    cloudy_blocks: list[tuple[slice, slice]] = field(default_factory=list)

    def assemble(self, member_cfg: dict, mask: np.ndarray, tile: Tile):
        """The member's monitor over the whole tile."""
        monitor = build_monitor(member_cfg["monitor"], mask)
        if self.blocks == 0:
            if not self.cloudy_blocks:
                log.warning("tile %s: forest mask is empty, the state monitors no pixel",
                            tile.id)
            monitor.beta = np.zeros((1,) + tile.shape, dtype=np.float32)
        else:
            monitor.__dict__.update(self.scalars)
            monitor.__dict__.update(self.full)
        for rows, cols in self.cloudy_blocks:
            block_mask = monitor.mask[rows, cols]
            block_mask[mask[rows, cols] == 1] = 4
        monitor.x = tile.geobox.coords["x"].values.astype(np.float64)
        monitor.y = tile.geobox.coords["y"].values.astype(np.float64)
        return monitor


def collect_unreadable(found: list[dict], cube: xr.Dataset) -> None:
    """Add the cube's unreadable assets (``{"item", "asset", "reason"}``) to ``found``, once."""
    for rec in json.loads(cube.attrs.get("unreadable", "[]")):
        if not any(r["item"] == rec["item"] and r["asset"] == rec["asset"] for r in found):
            found.append(rec)


def _place_block(full: dict, scalars: dict, monitor, rows: slice, cols: slice,
                 shape: tuple[int, int]) -> None:
    """Copy one block's fitted arrays into full-tile arrays (zero-filled elsewhere)."""
    for name, value in vars(monitor).items():
        if name in ("x", "y"):
            continue
        if isinstance(value, np.ndarray) and value.ndim in (2, 3):
            if name not in full:
                full[name] = np.zeros(value.shape[:-2] + shape, dtype=value.dtype)
            target = full[name]
            if value.ndim == 3 and value.shape[0] > target.shape[0]:
                # MoSum's window depth depends on the block's history length: pad
                grown = np.zeros((value.shape[0],) + shape, dtype=target.dtype)
                grown[: target.shape[0]] = target
                full[name] = target = grown
            if value.ndim == 3:
                target[: value.shape[0], rows, cols] = value
            else:
                target[rows, cols] = value
        elif isinstance(value, np.ndarray):
            raise TypeError(f"unexpected {value.ndim}-D monitor attribute {name!r}")
        else:
            scalars.setdefault(name, value)


__all__ = ["fit_tile", "collect_unreadable"]
