"""Fit an nrt monitor on a tile's stable history, block by block, and bring it forward.

Memory: the fit loads and fits one square block of ``monitor.block_size`` pixels a side at
a time (nrt needs ~30-40 bytes per pixel-date while fitting), so the peak does not grow
with the tile size. Fast-forward loads acquisitions in day batches sized to a memory budget
and feeds them to ``monitor()`` one solar day at a time, in date order.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import pystac
import xarray as xr

from .config import monitor_class
from .grid import Tile
from .stac import INDEX_BANDS, NoDataError, group_by_day, load_reflectance, spectral_index
from .state import TileState, software_versions

log = logging.getLogger(__name__)

#: bytes of float32 input per pixel-date and band allowed in one fast-forward batch
FF_BATCH_BUDGET = 256 * 1024**2


def datatake_key(item: pystac.Item) -> str:
    """Granule + sensing time: the same for an acquisition and its reprocessed versions."""
    return f"{item.properties.get('s2:mgrs_tile', '')}@{item.datetime:%Y-%m-%dT%H:%M:%S}"


def needed_bands(cfg: dict) -> list[str]:
    """Logical bands the fit needs: the index's, plus green and swir16 for CCDC screening."""
    bands = list(INDEX_BANDS[cfg["index"]])
    if _screen_outliers(cfg) == "CCDC_RIRLS":
        bands += [b for b in ("green", "swir16") if b not in bands]
    return bands


def _screen_outliers(cfg: dict) -> str | None:
    mon = cfg["monitor"]
    if "screen_outliers" in mon["fit"]:
        return mon["fit"]["screen_outliers"]
    # nrt's class defaults
    return {"EWMA": "Shewhart", "CCDC": "CCDC_RIRLS"}.get(mon["class"])


def build_monitor(mon_cfg: dict, mask: np.ndarray):
    """A fresh nrt monitor of the configured class for ``mask`` (uint8, 1 = monitor)."""
    cls = monitor_class(mon_cfg["class"])
    params = {k: (float(v) if isinstance(v, float) else v) for k, v in mon_cfg["params"].items()}
    return cls(mask=np.ascontiguousarray(mask, dtype=np.uint8), **params)


def _blocks(shape: tuple[int, int], size: int):
    for r in range(0, shape[0], size):
        for c in range(0, shape[1], size):
            yield slice(r, min(r + size, shape[0])), slice(c, min(c + size, shape[1]))


def _fit_kwargs(cfg: dict, cube: xr.Dataset, threads: int) -> dict:
    kwargs = dict(cfg["monitor"]["fit"])
    kwargs["n_threads"] = max(1, min(threads, os.cpu_count() or 1))
    if _screen_outliers(cfg) == "CCDC_RIRLS":
        kwargs["green"] = cube["green"]
        kwargs["swir"] = cube["swir16"]
    if kwargs.get("method") == "ROC":
        kwargs.pop("n_threads")  # ROC is serial and refuses the argument in some versions
    return kwargs


def fit_tile(
    tile: Tile,
    items: Sequence[pystac.Item],
    mask: np.ndarray,
    cfg: dict,
    loader: Callable[..., xr.Dataset] = load_reflectance,
    threads: int = 1,
) -> TileState:
    """Fit the configured monitor on ``items`` (the history) for ``tile``.

    ``mask`` is the tile's forest mask (uint8, 1 = forest, tile shape). Raises
    :class:`NoDataError` when there is no acquisition to fit on.
    """
    if not items:
        raise NoDataError(
            f"tile {tile.id}: no Sentinel-2 acquisition between {cfg['history']['start']} and "
            f"{cfg['history']['end']} with eo:cloud_cover < {cfg['stac']['max_cloud_cover']}. "
            "Widen history.start/end or raise stac.max_cloud_cover."
        )
    if mask.shape != tile.shape:
        raise ValueError(f"tile {tile.id}: mask shape {mask.shape} != tile shape {tile.shape}")
    bands = needed_bands(cfg)
    block = cfg["monitor"]["block_size"]
    full: dict[str, np.ndarray] = {}
    scalars: dict[str, object] = {}
    fitted_blocks = 0
    cloudy_blocks: list[tuple[slice, slice]] = []
    unreadable: list[dict] = []  # assets skipped by stac.on_unreadable_asset: skip
    for rows, cols in _blocks(tile.shape, block):
        sub_mask = mask[rows, cols]
        if not (sub_mask == 1).any():
            continue  # nothing to monitor here; arrays keep their zero fill
        gbox = tile.geobox[rows, cols]
        cube = loader(items, gbox, bands, cfg["stac"], threads=threads)
        _collect_unreadable(unreadable, cube)
        index = spectral_index(cube, cfg["index"])
        index = index.copy(data=np.ascontiguousarray(index.values))  # nrt IQR needs C order
        monitor = build_monitor(cfg["monitor"], sub_mask)
        try:
            monitor.fit(index, **_fit_kwargs(cfg, cube, threads))
        except ValueError as err:
            if "no time-series with sufficient" not in str(err):
                raise
            # every forest pixel of the block is too cloudy to fit: nrt class 4
            log.warning("tile %s: block rows %d-%d cols %d-%d has too few clear observations "
                        "(%s); its forest pixels are marked 4 (not enough observations)",
                        tile.id, rows.start, rows.stop, cols.start, cols.stop, err)
            cloudy_blocks.append((rows, cols))
            continue
        _place_block(full, scalars, monitor, rows, cols, tile.shape)
        fitted_blocks += 1
        log.info("tile %s: fitted block rows %d-%d cols %d-%d on %d dates", tile.id,
                 rows.start, rows.stop, cols.start, cols.stop, index.sizes["time"])
    if fitted_blocks == 0 and cloudy_blocks:
        raise NoDataError(
            f"tile {tile.id}: no forest pixel has enough clear observations between "
            f"{cfg['history']['start']} and {cfg['history']['end']} to fit the model "
            f"({len(items)} items searched). The period is too cloudy or too short: widen "
            "history, raise stac.max_cloud_cover, or check stac.valid_scl_classes."
        )
    monitor = build_monitor(cfg["monitor"], mask)
    if fitted_blocks == 0:
        log.warning("tile %s: forest mask is empty, the state monitors no pixel", tile.id)
        monitor.beta = np.zeros((1,) + tile.shape, dtype=np.float32)
    else:
        monitor.__dict__.update(scalars)
        monitor.__dict__.update(full)
        for rows, cols in cloudy_blocks:
            block_mask = monitor.mask[rows, cols]
            block_mask[mask[rows, cols] == 1] = 4
    monitor.x = tile.geobox.coords["x"].values.astype(np.float64)
    monitor.y = tile.geobox.coords["y"].values.astype(np.float64)
    by_day = group_by_day(items)
    meta = {
        "tile_id": tile.id,
        "index": cfg["index"],
        "monitor": {"class": cfg["monitor"]["class"], "params": cfg["monitor"]["params"],
                    "fit": cfg["monitor"]["fit"]},
        "history": {
            "start": str(cfg["history"]["start"]),
            "end": str(cfg["history"]["end"]),
            "days": [str(d) for d in by_day],
            "items": [it.id for d in by_day for it in by_day[d]],
            "unreadable": unreadable,
        },
        "applied": [],
        "software": software_versions(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return TileState(monitor=monitor, crs=tile.crs, transform=tile.transform, metadata=meta)


def _collect_unreadable(found: list[dict], cube: xr.Dataset) -> None:
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


def fast_forward(
    state: TileState,
    items: Sequence[pystac.Item],
    tile: Tile,
    cfg: dict,
    loader: Callable[..., xr.Dataset] = load_reflectance,
    threads: int = 1,
) -> list[dict]:
    """Monitor every solar day in ``items`` that is not yet in the state's ledger, in date
    order, updating ``state`` in place. Returns the ledger entries added
    (``{"day", "items", "valid_pixels"}``).

    Days not newer than the last applied day are refused (nrt would count them out of
    order); they are returned with ``"skipped": "older than last applied day"``.
    """
    applied = state.applied_items
    applied_datatakes = {k for e in state.metadata.get("applied", []) for k in e.get("datatakes", [])}
    items = [it for it in items if datatake_key(it) not in applied_datatakes]
    history_end = str(state.metadata["history"]["end"])
    by_day = group_by_day([it for it in items if it.id not in applied])
    last = state.last_day or history_end
    days = [d for d in by_day if str(d) > last]
    added: list[dict] = []
    for d in by_day:
        if str(d) <= last:
            added.append({"day": str(d), "items": [i.id for i in by_day[d]],
                          "skipped": "older than last applied day"})
    if not days:
        return added
    bands = list(INDEX_BANDS[cfg["index"]])
    pixels = tile.shape[0] * tile.shape[1]
    batch = max(1, FF_BATCH_BUDGET // (pixels * (len(bands) + 1) * 4))
    monitor = state.monitor
    for start in range(0, len(days), batch):
        chunk = days[start : start + batch]
        cube = loader([it for d in chunk for it in by_day[d]], tile.geobox, bands, cfg["stac"],
                      threads=threads)
        unreadable: list[dict] = []
        _collect_unreadable(unreadable, cube)
        index = spectral_index(cube, cfg["index"])
        for i, d in enumerate(chunk):
            array = np.ascontiguousarray(index.values[i])
            valid = int(np.isfinite(array[monitor.mask == 1]).sum())
            if valid:
                monitor.monitor(array=array, date=dt.datetime(d.year, d.month, d.day))
            entry = {"day": str(d), "items": [it.id for it in by_day[d]],
                     "datatakes": [datatake_key(it) for it in by_day[d]], "valid_pixels": valid}
            day_ids = {it.id for it in by_day[d]}
            if skipped := [r for r in unreadable if r["item"] in day_ids]:
                entry["unreadable"] = skipped  # applied without them: pixels not observed
            state.metadata.setdefault("applied", []).append(entry)
            added.append(entry)
        log.info("tile %s: monitored %d day(s) up to %s", tile.id, len(chunk), chunk[-1])
    if monitor.detection_date is None:
        monitor.detection_date = np.zeros(tile.shape, dtype=np.uint16)
    return added


def warm_numba_cache(cfg: dict, threads: int = 1) -> float:
    """Compile (or load from numba's on-disk cache) the nrt kernels the configured monitor
    uses, by fitting and monitoring a tiny synthetic series (8 x 8 px, 146 days). Returns
    the seconds it took (~30 s cold, ~1 s warm).

    nrt's kernels are ``numba.jit(cache=True)``: compiled on first use in a new
    environment, then loaded from ``NUMBA_CACHE_DIR`` (default: next to nrt's sources).
    Warming a cache on a shared filesystem once, before submitting, spares every cluster
    job that first compilation (and many jobs from compiling the same kernels at once).
    """
    import time

    import pandas as pd

    t0 = time.perf_counter()
    days = pd.date_range("2020-01-01", periods=146, freq="5D")
    rng = np.random.default_rng(0)
    season = 0.6 + 0.2 * np.sin(2 * np.pi * days.dayofyear.values / 365.25)
    values = (season[:, None, None] + rng.normal(0, 0.02, (len(days), 8, 8))).astype(np.float32)
    coords = {"time": days.values, "y": np.arange(8.0), "x": np.arange(8.0)}
    index = xr.DataArray(values, dims=("time", "y", "x"), coords=coords)
    # CCDC's outlier screening also reads green and swir16
    cube = xr.Dataset({"green": index * 0.1, "swir16": index * 0.2})
    monitor = build_monitor(cfg["monitor"], np.ones((8, 8), dtype=np.uint8))
    monitor.fit(index, **_fit_kwargs(cfg, cube, threads))
    monitor.monitor(array=np.ascontiguousarray(values[-1]), date=dt.datetime(2022, 1, 1))
    return time.perf_counter() - t0


__all__ = ["fit_tile", "fast_forward", "build_monitor", "needed_bands", "NoDataError",
           "warm_numba_cache"]
