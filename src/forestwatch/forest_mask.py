"""Forest mask per tile: from an existing tree-cover raster, or from a rule on the history.

Both return a uint8 array of the tile's shape: 1 = forest (monitored), 0 = not forest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pystac
import rasterio
import xarray as xr
from rasterio.enums import Resampling
from rasterio.warp import reproject

from .grid import Tile
from .io import atomic_path
from .stac import NoDataError, load_reflectance, spectral_index

log = logging.getLogger(__name__)


def mask_from_tree_cover(tile: Tile, path: str | Path, threshold: float,
                         resampling: str = "average") -> np.ndarray:
    """Forest where the tree-cover raster (percent, any CRS) warped to the tile is
    ``>= threshold``. Pixels outside the raster or on its nodata are not forest."""
    with rasterio.open(path) as src:
        if src.crs is None:
            raise ValueError(f"tree-cover raster {str(path)!r} has no CRS; assign one first.")
        cover = np.full(tile.shape, np.nan, dtype=np.float32)
        reproject(
            source=rasterio.band(src, 1), destination=cover,
            src_nodata=src.nodata, dst_nodata=np.nan,
            dst_transform=tile.transform, dst_crs=tile.crs,
            resampling=Resampling[resampling],
        )
    return np.where(np.isfinite(cover) & (cover >= threshold), 1, 0).astype(np.uint8)


def harmonic_intercept(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel intercept of a first-order harmonic fit (mean level over the year),
    ignoring NaN. Returns (intercept float32, number of valid observations int32)."""
    t = pd.DatetimeIndex(da.time.values)
    w = 2 * np.pi * (t.day_of_year.values / 365.25)
    X = np.stack([np.ones_like(w), np.cos(w), np.sin(w)], axis=1)  # (n, 3)
    y = da.values.reshape(da.shape[0], -1).astype(np.float64)
    valid = np.isfinite(y)
    y0 = np.where(valid, y, 0.0)
    # per-pixel normal equations over valid dates only
    xtx = np.einsum("tp,tq,tn->npq", X, X, valid.astype(np.float64))
    xty = np.einsum("tp,tn->np", X, y0)
    n = valid.sum(axis=0)
    ok = n >= X.shape[1]
    coef = np.full((y.shape[1], 3), np.nan)
    if ok.any():
        # a small ridge keeps near-singular pixels (clustered dates) from blowing up
        ridge = 1e-6 * np.eye(3)
        coef[ok] = np.linalg.solve(xtx[ok] + ridge, xty[ok][..., None])[..., 0]
    shape = da.shape[1:]
    return coef[:, 0].reshape(shape).astype(np.float32), n.reshape(shape).astype(np.int32)


def mask_from_rule(
    tile: Tile,
    items: Sequence[pystac.Item],
    rule: dict,
    stac_cfg: dict,
    block_size: int = 512,
    loader: Callable[..., xr.Dataset] = load_reflectance,
    threads: int = 1,
) -> np.ndarray:
    """Forest where the history's NDVI intercept is >= ``ndvi_min`` and the SWIR
    intercept (``swir_band``, reflectance) is <= ``swir_max`` (after Zhu et al. 2012),
    with at least ``min_observations`` clear observations."""
    if not items:
        raise NoDataError(
            f"tile {tile.id}: no acquisition in the history period to derive the forest mask "
            "from; widen history or use forest_mask.method: file."
        )
    mask = np.zeros(tile.shape, dtype=np.uint8)
    swir = rule["swir_band"]
    for r in range(0, tile.shape[0], block_size):
        for c in range(0, tile.shape[1], block_size):
            rows = slice(r, min(r + block_size, tile.shape[0]))
            cols = slice(c, min(c + block_size, tile.shape[1]))
            cube = loader(items, tile.geobox[rows, cols], ["red", "nir", swir], stac_cfg,
                          threads=threads)
            ndvi_i, n = harmonic_intercept(spectral_index(cube, "NDVI"))
            swir_i, _ = harmonic_intercept(cube[swir])
            forest = (ndvi_i >= rule["ndvi_min"]) & (swir_i <= rule["swir_max"])
            forest &= n >= rule["min_observations"]
            mask[rows, cols] = forest
    log.info("tile %s: rule mask marks %.1f %% forest", tile.id, 100 * mask.mean())
    return mask


def write_mask(mask: np.ndarray, tile: Tile, path: str | Path, source: str) -> None:
    """Write the mask as a compressed GeoTIFF (uint8, 1 forest / 0 not, nodata 255)."""
    profile = dict(
        driver="GTiff", height=tile.shape[0], width=tile.shape[1], count=1, dtype="uint8",
        crs=tile.crs, transform=tile.transform, nodata=255, compress="DEFLATE",
    )
    if min(tile.shape) >= 256:  # GeoTIFF tiles must fit in the raster
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(mask.astype(np.uint8), 1)
        dst.set_band_description(1, "forest")
        dst.update_tags(1, values="1 = forest (monitored), 0 = not forest", source=source)


def read_mask(path: str | Path, tile: Tile) -> np.ndarray:
    """Read a tile's mask and check that it lies on the tile's grid."""
    with rasterio.open(path) as src:
        if src.shape != tile.shape or not src.transform.almost_equals(tile.transform):
            raise ValueError(
                f"forest mask {str(path)!r} is not on tile {tile.id}'s grid "
                f"(shape {src.shape} vs {tile.shape}); regenerate it with the workflow."
            )
        data = src.read(1)
    return np.where(data == 1, 1, 0).astype(np.uint8)
