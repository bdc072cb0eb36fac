"""``forest_mask.method: rule``: forest where the history's harmonic intercepts of NDVI and
SWIR reflectance pass the thresholds of Zhu et al. (2012), block by block."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pystac
import xarray as xr

from ..grid import Tile
from ..stac import NoDataError, load_reflectance, spectral_index
from ._blocks import mask_by_block

log = logging.getLogger(__name__)


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
    swir = rule["swir_band"]

    def classify(cube: xr.Dataset) -> np.ndarray:
        ndvi_i, n = harmonic_intercept(spectral_index(cube, "NDVI"))
        swir_i, _ = harmonic_intercept(cube[swir])
        forest = (ndvi_i >= rule["ndvi_min"]) & (swir_i <= rule["swir_max"])
        return forest & (n >= rule["min_observations"])

    mask = mask_by_block(tile, items, bands=["red", "nir", swir], classify=classify,
                         stac_cfg=stac_cfg, block_size=block_size, loader=loader,
                         threads=threads)
    log.info("tile %s: rule mask marks %.1f %% forest", tile.id, 100 * mask.mean())
    return mask


