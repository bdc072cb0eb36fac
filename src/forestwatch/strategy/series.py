"""The strategy run's input: reflectance time series of the sample pixels, read once.

Every candidate is evaluated on the same arrays in memory, so the bands of a test tile are
read once for all candidates (one load per block that holds a sample pixel, every band any
candidate's index needs, the whole period from the history's start to the end of
monitoring), and only the sample pixels' values are kept: memory is the samples' series
plus one block's cube.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pystac
import xarray as xr

from ..grid import Tile
from ..stac import INDEX_BANDS, load_reflectance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TilePixels:
    """Pixels of one tile to evaluate: ``rows``/``cols`` (int64, tile pixel indices),
    ``sample`` (int64, the sample each pixel belongs to, -1 for none: a quicklook
    pixel) and ``monitored`` (bool, inside the tile's forest mask)."""

    tile_id: str
    rows: np.ndarray
    cols: np.ndarray
    sample: np.ndarray
    monitored: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.size)


@dataclass(frozen=True)
class PixelSeries:
    """Reflectance of some pixels of one tile, one time step per solar day.

    ``bands``: logical band -> float32 array (time, pixel), NaN where not clear;
    ``days``: the solar days (dt.date), ascending; ``pixels``: which pixels.
    """

    pixels: TilePixels
    days: tuple[dt.date, ...]
    bands: dict[str, np.ndarray]
    #: (rows, cols) when the pixels are the whole tile in row-major order (what a
    #: regional screen needs: the neighbourhood); None for scattered pixels
    shape: tuple[int, int] | None = None

    @property
    def grid_shape(self) -> tuple[int, int]:
        """The 2-D layout the pixels are monitored in: the tile, or one row of pixels."""
        return self.shape if self.shape is not None else (1, len(self.pixels))

    def dataset(self, band_names: Sequence[str], selection: slice) -> xr.Dataset:
        """The ``selection`` of time steps as an xarray Dataset with dims (time, y, x):
        the whole tile, or scattered pixels laid out as one row (y = 1, x = pixel):
        nrt's monitors are per pixel, so a row of sample pixels is monitored as a tile
        would be."""
        days = self.days[selection]
        time = np.array([np.datetime64(d, "ns") for d in days])
        h, w = self.grid_shape
        coords = {"time": time, "y": np.arange(h, dtype=np.float64),
                  "x": np.arange(w, dtype=np.float64)}
        data = {b: (("time", "y", "x"), np.ascontiguousarray(
            self.bands[b][selection].reshape(len(days), h, w))) for b in band_names}
        return xr.Dataset(data, coords=coords)

    def gather(self, pixels: TilePixels) -> PixelSeries:
        """The series of ``pixels`` (of the same tile) taken from this whole-tile series."""
        assert self.shape is not None, "gather needs a whole-tile series"
        flat = pixels.rows * self.shape[1] + pixels.cols
        return PixelSeries(pixels=pixels, days=self.days,
                           bands={b: np.ascontiguousarray(v[:, flat])
                                  for b, v in self.bands.items()})


def whole_tile(tile: Tile, mask: np.ndarray) -> TilePixels:
    """Every pixel of ``tile`` in row-major order (monitored where ``mask`` is 1)."""
    rows, cols = np.divmod(np.arange(tile.shape[0] * tile.shape[1], dtype=np.int64),
                           tile.shape[1])
    return TilePixels(tile_id=tile.id, rows=rows, cols=cols,
                      sample=np.full(rows.size, -1, dtype=np.int64),
                      monitored=(mask == 1).ravel())


def strategy_bands(indices: Sequence[str], *, with_ccdc_screening: bool) -> list[str]:
    """Every logical band the candidates' indices need (and CCDC's screening bands)."""
    bands: list[str] = []
    for name in indices:
        bands += [b for b in INDEX_BANDS[name] if b not in bands]
    if with_ccdc_screening:
        bands += [b for b in ("green", "swir16") if b not in bands]
    return bands


def load_pixel_series(
    tile: Tile,
    items: Sequence[pystac.Item],
    pixels: TilePixels,
    bands: Sequence[str],
    stac_cfg: dict,
    *,
    block: int,
    threads: int = 1,
    loader: Callable[..., xr.Dataset] = load_reflectance,
    shape: tuple[int, int] | None = None,
) -> PixelSeries:
    """Read ``bands`` of ``items`` for ``pixels`` of ``tile``, block by block (square
    blocks of ``block`` pixels; only blocks holding one of the pixels are read)."""
    n = len(pixels)
    out: dict[str, np.ndarray] | None = None
    days: tuple[dt.date, ...] | None = None
    reads = 0
    for r0 in range(0, tile.shape[0], block):
        for c0 in range(0, tile.shape[1], block):
            inside = ((pixels.rows >= r0) & (pixels.rows < r0 + block)
                      & (pixels.cols >= c0) & (pixels.cols < c0 + block))
            if not inside.any():
                continue
            rows = slice(r0, min(r0 + block, tile.shape[0]))
            cols = slice(c0, min(c0 + block, tile.shape[1]))
            cube = loader(items, tile.geobox[rows, cols], list(bands), stac_cfg,
                          threads=threads)
            reads += 1
            block_days = tuple(dt.date.fromisoformat(str(t)[:10])
                               for t in cube["time"].values)
            if out is None:
                days = block_days
                out = {b: np.full((len(days), n), np.nan, dtype=np.float32) for b in bands}
            elif block_days != days:
                raise RuntimeError(f"tile {tile.id}: blocks have different time steps")
            r = pixels.rows[inside] - r0
            c = pixels.cols[inside] - c0
            for b in bands:
                out[b][:, inside] = cube[b].values[:, r, c]
    if out is None:  # no pixel: an empty series
        out = {b: np.zeros((0, 0), dtype=np.float32) for b in bands}
        days = ()
    log.info("tile %s: %d pixel(s) x %d day(s) x %d band(s) read in %d block(s)", tile.id, n,
             len(days), len(bands), reads)
    return PixelSeries(pixels=pixels, days=days, bands=out, shape=shape)


__all__ = ["TilePixels", "PixelSeries", "load_pixel_series", "strategy_bands", "whole_tile"]
