"""The samples a strategy run scores against, and the pixels they cover.

Two sources, one type (:class:`ScoringSamples`):

* **the synthetic archive's truth** (:func:`truth_samples`): a stratified random sample of
  core pixels of the test area (pixels one pixel or more away from a forest or
  disturbance edge, as :mod:`forestwatch.accuracy` scores), strata = stable forest and
  each disturbance type inside the scored window, ``per_stratum`` pixels each (all of a
  smaller stratum). Each sample's weight is its stratum's pixel count over its sample
  size, so that shares are estimates for the whole test area, not for the sample;
* **reference samples** read by :mod:`forestwatch.strategy.reference`
  (:func:`reference_samples`), weighted by their strata when the file has them.

A sample's map answer is its pixels' majority (a point sample has one pixel).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import from_bounds
from scipy import ndimage

from ..accuracy import TYPES
from ..grid import Tile
from .series import TilePixels

EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class ScoringSamples:
    """One row per sample. ``disturbed`` (bool), ``kind`` (str: the disturbance type,
    "" for stable or unknown), ``date`` (int64 days since 1970, -1 for stable),
    ``weight`` (float64: the area each sample stands for, in ha; 1 without strata),
    ``stratum`` (str per sample, or None) and ``strata_area_ha`` (stratum -> ha, or
    None); ``source`` says where they come from, for the report."""

    disturbed: np.ndarray
    kind: np.ndarray
    date: np.ndarray
    weight: np.ndarray
    stratum: np.ndarray | None
    strata_area_ha: dict[str, float] | None
    source: str

    def __len__(self) -> int:
        return int(self.disturbed.size)


def _days(value) -> int:
    return (dt.date.fromisoformat(str(value)) - EPOCH).days


def read_on_tile(path: Path, tile: Tile) -> np.ndarray:
    """Band 1 of a truth raster on ``tile``'s grid (0 outside the raster)."""
    b = tile.geobox.boundingbox
    with rasterio.open(path) as src:
        window = from_bounds(b.left, b.bottom, b.right, b.top,
                             transform=src.transform).round_offsets().round_lengths()
        return src.read(1, window=window, boundless=True, fill_value=0, out_shape=tile.shape)


def truth_samples(
    tiles: Sequence[Tile],
    masks: dict[str, np.ndarray],
    truth_dir: str | Path,
    *,
    period: tuple[str, str],
    min_lead_days: int,
    per_stratum: int,
    seed: int,
    pixel_area_ha: float,
) -> tuple[ScoringSamples, list[TilePixels]]:
    """A stratified random sample of the truth's core forest pixels on ``tiles`` (module
    docstring). ``masks``: tile id -> the workflow's forest mask (uint8, 1 = forest), which
    says which samples the workflow monitors. ``period``: the monitoring period (ISO
    dates); disturbances from its start to ``min_lead_days`` before its end are scored."""
    truth_dir = Path(truth_dir)
    start, end = _days(period[0]), _days(period[1])
    strata: dict[str, list[tuple[int, np.ndarray]]] = {}
    info: dict[str, list[np.ndarray]] = {"date": [], "type": []}
    for t, tile in enumerate(tiles):
        forest = read_on_tile(truth_dir / "forest.tif", tile) == 1
        day = read_on_tile(truth_dir / "disturbance_date.tif", tile).astype(np.int64)
        kind = read_on_tile(truth_dir / "disturbance_type.tif", tile)
        edge = np.zeros(tile.shape, dtype=bool)
        for layer in (forest, day > 0):
            edge |= ndimage.binary_dilation(layer) & ~ndimage.binary_erosion(layer)
        core = forest & ~edge
        scored = core & (day > start) & (day <= end - min_lead_days)
        flat = np.flatnonzero(core & (day == 0))
        strata.setdefault("stable", []).append((t, flat))
        for code in np.unique(kind[scored]):
            name = TYPES.get(int(code), (f"type_{code}",))[0]
            strata.setdefault(name, []).append((t, np.flatnonzero(scored & (kind == code))))
        info["date"].append(day.ravel())
        info["type"].append(kind.ravel())
    rng = np.random.default_rng(seed)
    per_tile: dict[int, list[tuple[np.ndarray, int]]] = {}
    rows_out = {"disturbed": [], "kind": [], "date": [], "weight": [], "stratum": []}
    sizes: dict[str, float] = {}
    n_samples = 0
    for name in sorted(strata):
        members = [(t, idx) for t, idx in strata[name] if idx.size]
        total = sum(idx.size for _, idx in members)
        if not total:
            continue
        sizes[name] = total * pixel_area_ha
        pool_t = np.concatenate([np.full(idx.size, t) for t, idx in members])
        pool_i = np.concatenate([idx for _, idx in members])
        take = np.sort(rng.choice(total, size=min(per_stratum, total), replace=False))
        weight = sizes[name] / take.size
        for t in np.unique(pool_t[take]):
            chosen = pool_i[take][pool_t[take] == t]
            ids = np.arange(n_samples, n_samples + chosen.size)
            per_tile.setdefault(int(t), []).append((chosen, ids))
            n_samples += chosen.size
            rows_out["disturbed"].append(np.full(chosen.size, name != "stable"))
            rows_out["kind"].append(np.full(chosen.size, "" if name == "stable" else name,
                                            dtype=object))
            rows_out["date"].append(np.where(name == "stable", -1,
                                             info["date"][t][chosen]).astype(np.int64))
            rows_out["weight"].append(np.full(chosen.size, weight))
            rows_out["stratum"].append(np.full(chosen.size, name, dtype=object))
    pixels = []
    for t, parts in sorted(per_tile.items()):
        flat = np.concatenate([p for p, _ in parts])
        ids = np.concatenate([i for _, i in parts])
        rows, cols = np.unravel_index(flat, tiles[t].shape)
        pixels.append(TilePixels(tile_id=tiles[t].id, rows=rows.astype(np.int64),
                                 cols=cols.astype(np.int64), sample=ids.astype(np.int64),
                                 monitored=masks[tiles[t].id][rows, cols] == 1))
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in rows_out.items()}
    samples = ScoringSamples(
        disturbed=cat["disturbed"].astype(bool), kind=cat["kind"].astype(object),
        date=cat["date"].astype(np.int64), weight=cat["weight"].astype(np.float64),
        stratum=cat["stratum"].astype(object), strata_area_ha=sizes,
        source=(f"the synthetic truth: a stratified random sample of core forest pixels, "
                f"up to {per_stratum} per stratum (seed {seed})"))
    return samples, pixels


def reference_samples(ref, pixels, masks: dict[str, np.ndarray]
                      ) -> tuple[ScoringSamples, list[TilePixels]]:
    """:class:`ScoringSamples` and their pixels from reference samples ``ref``
    (:class:`~forestwatch.strategy.reference.ReferenceSamples`) and their pixels
    (:class:`~forestwatch.strategy.reference.SamplePixels`); ``masks``: tile id -> the
    workflow's forest mask. With strata, each sample stands for its stratum's area over
    the stratum's sample size; without, for 1."""
    n = len(ref)
    weight = np.ones(n, dtype=np.float64)
    if ref.stratum is not None and ref.strata_area_ha:
        for name, area in ref.strata_area_ha.items():
            members = ref.stratum == name
            if members.any():
                weight[members] = float(area) / int(members.sum())
    tiles = []
    for tile_id in sorted(pixels.rows):
        rows, cols = pixels.rows[tile_id], pixels.cols[tile_id]
        tiles.append(TilePixels(tile_id=tile_id, rows=rows, cols=cols,
                                sample=pixels.sample[tile_id],
                                monitored=masks[tile_id][rows, cols] == 1))
    kinds = np.array([k or "" for k in ref.kind], dtype=object)
    samples = ScoringSamples(
        disturbed=np.asarray(ref.disturbed, dtype=bool), kind=kinds,
        date=np.asarray(ref.date, dtype=np.int64), weight=weight,
        stratum=ref.stratum, strata_area_ha=ref.strata_area_ha,
        source=f"{n} reference sample(s)" + (" (stratified)" if ref.stratum is not None
                                              else ""))
    return samples, tiles


def quicklook_pixels(tile: Tile, mask: np.ndarray, *, max_px: int
                     ) -> tuple[TilePixels, tuple[slice, slice]]:
    """The forest pixels of a window of at most ``max_px`` a side at the tile's centre."""
    h, w = min(max_px, tile.shape[0]), min(max_px, tile.shape[1])
    r0, c0 = (tile.shape[0] - h) // 2, (tile.shape[1] - w) // 2
    window = (slice(r0, r0 + h), slice(c0, c0 + w))
    rows, cols = np.nonzero(mask[window] == 1)
    rows, cols = rows + r0, cols + c0
    return TilePixels(tile_id=tile.id, rows=rows.astype(np.int64), cols=cols.astype(np.int64),
                      sample=np.full(rows.size, -1, dtype=np.int64),
                      monitored=np.ones(rows.size, dtype=bool)), window


__all__ = ["ScoringSamples", "truth_samples", "reference_samples", "quicklook_pixels",
           "read_on_tile"]
