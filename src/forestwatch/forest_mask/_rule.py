"""``forest_mask.method: rule``: forest where the history's harmonic intercepts of NDVI and
SWIR reflectance pass the thresholds of Zhu et al. (2012), block by block.

Unflagged haze, thin cirrus, snow and cloud edges labelled clear pull NDVI down, never up;
an ordinary least-squares intercept takes them in and drops forest whose intercept is
close to ``ndvi_min`` (deciduous forest first). With ``screen_low_outliers: k`` the fit is
made twice: observations whose NDVI residual from the first fit is below ``-k`` robust
standard deviations (1.4826 x the median absolute deviation of the pixel's residuals)
are left out of the second, for both intercepts. On the hard synthetic archive this took
the mask's producer's accuracy from 96.2 % to 99.98 % at a user's accuracy of 100 %.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pystac
import xarray as xr

from ..grid import Tile
from ..stac import NoDataError, load_reflectance, spectral_index
from ._blocks import mask_by_block

log = logging.getLogger(__name__)

#: pixels per strip of a block that the rule classifies at once (memory)
STRIP_PIXELS = 65_536


def _design(da: xr.DataArray) -> np.ndarray:
    t = pd.DatetimeIndex(da.time.values)
    w = 2 * np.pi * (t.day_of_year.values / 365.25)
    return np.stack([np.ones_like(w), np.cos(w), np.sin(w)], axis=1)  # (n, 3)


def _fit(X: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-pixel first-order harmonic coefficients (pixels, 3), NaN with < 3 obs.

    The per-pixel normal equations over valid dates only, as matrix products (BLAS): the
    six distinct products of the design's columns per date, weighted by each pixel's
    valid dates, give X'X; the zero-filled values give X'y (an einsum over dates x 3 x 3
    x pixels took ~0.27 s per 65,536 px strip of two years' history, these ~0.02 s)."""
    y0 = np.where(valid, y, 0.0)
    n_coef = X.shape[1]
    pairs = [(p, q) for p in range(n_coef) for q in range(p, n_coef)]
    products = np.stack([X[:, p] * X[:, q] for p, q in pairs], axis=1)  # (t, 6)
    sums = valid.T.astype(np.float64) @ products  # (n, 6)
    xtx = np.empty((y.shape[1], n_coef, n_coef))
    for k, (p, q) in enumerate(pairs):
        xtx[:, p, q] = xtx[:, q, p] = sums[:, k]
    xty = y0.T @ X  # (n, 3)
    ok = valid.sum(axis=0) >= n_coef
    coef = np.full((y.shape[1], n_coef), np.nan)
    if ok.any():
        # a small ridge keeps near-singular pixels (clustered dates) from blowing up
        ridge = 1e-6 * np.eye(n_coef)
        coef[ok] = np.linalg.solve(xtx[ok] + ridge, xty[ok][..., None])[..., 0]
    return coef


def _column_nanmedian(a: np.ndarray) -> np.ndarray:
    """Median of each column of ``a`` (dates, pixels) ignoring NaN; NaN for an all-NaN
    column. Same values as ``np.nanmedian(a, axis=0)``, from one sort of the pixels' rows
    (NaN sort last) instead of numpy's masked-array path (~0.4 s per strip). The rows are
    laid out pixel by pixel first: sorting the strided view gathered each pixel's dates
    from 65,536 px apart, 0.10 s per strip against 0.06 s for the copy and the sort."""
    ordered = a.T.copy(order="C")  # (pixels, dates), each pixel's dates together
    ordered.sort(axis=1)
    n = np.count_nonzero(~np.isnan(a), axis=0)
    rows = np.arange(ordered.shape[0])
    lo = ordered[rows, np.maximum(n - 1, 0) // 2]
    hi = ordered[rows, n // 2 - (n == 0)]
    return np.where(n > 0, 0.5 * (lo + hi), np.nan)


def low_outliers(da: xr.DataArray, k: float) -> np.ndarray:
    """Observations (bool, the array's shape) whose residual from a first-order harmonic
    fit is below ``-k`` robust standard deviations of the pixel's residuals."""
    X = _design(da)
    y = da.values.reshape(da.shape[0], -1).astype(np.float64)
    valid = np.isfinite(y)
    coef = _fit(X, y, valid)
    res = np.where(valid, y - X @ np.nan_to_num(coef.T), np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        centre = _column_nanmedian(res)
        sigma = 1.4826 * _column_nanmedian(np.abs(res - centre))
        low = valid & (res < -k * sigma)
    return low.reshape(da.shape)


def harmonic_intercept(da: xr.DataArray, *, exclude: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel intercept of a first-order harmonic fit (mean level over the year),
    ignoring NaN and the observations ``exclude`` marks (bool, the array's shape).
    Returns (intercept float32, number of observations used int32)."""
    X = _design(da)
    y = da.values.reshape(da.shape[0], -1).astype(np.float64)
    valid = np.isfinite(y)
    if exclude is not None:
        valid &= ~exclude.reshape(valid.shape)
    coef = _fit(X, y, valid)
    shape = da.shape[1:]
    return (coef[:, 0].reshape(shape).astype(np.float32),
            valid.sum(axis=0).reshape(shape).astype(np.int32))


def rule_classifier(rule: dict, *, threads: int = 1
                    ) -> tuple[list[str], Callable[[xr.Dataset], np.ndarray]]:
    """The rule ``forest_mask.rule`` as (the logical bands it reads, a classifier of one
    block's reflectance cube -> bool (y, x), True = forest). The mask rule runs it block by
    block on its own loads (:func:`mask_from_rule`); the fit runs it on the blocks it loads
    anyway (:func:`forestwatch.monitor.fit_tile`), so that the history is read once.

    The classifier takes strips of rows on ``threads`` threads: numpy's sorts, BLAS
    products and element-wise passes release the GIL, and one thread left a core idle
    (~7 s of a 1000 x 1000 px tile's two-year history on one core). Each pixel's numbers
    are its own, whatever strip it is in (tested)."""
    swir = rule["swir_band"]
    k = rule["screen_low_outliers"]

    def classify_strip(cube: xr.Dataset) -> np.ndarray:
        ndvi = spectral_index(cube, "NDVI")
        drop = low_outliers(ndvi, k) if k is not None else None
        ndvi_i, n = harmonic_intercept(ndvi, exclude=drop)
        swir_i, _ = harmonic_intercept(cube[swir], exclude=drop)
        forest = (ndvi_i >= rule["ndvi_min"]) & (swir_i <= rule["swir_max"])
        return forest & (n >= rule["min_observations"])

    workers = max(1, threads)

    def classify(cube: xr.Dataset) -> np.ndarray:
        # strips of rows: the fits hold several float64 (dates, pixels) arrays, ~8 x the
        # block's float32 cube of one band; per strip they stay small whatever the
        # history's length (a 512 px block of two years' history peaked at 2.4 GB whole),
        # and the strips in flight together hold STRIP_PIXELS at most
        height, width = cube.sizes["y"], cube.sizes["x"]
        rows = max(1, STRIP_PIXELS // workers // max(width, 1))
        forest = np.zeros((height, width), dtype=bool)

        def strip(r: int) -> None:
            forest[r:r + rows] = classify_strip(cube.isel(y=slice(r, r + rows)))

        with ThreadPoolExecutor(workers, thread_name_prefix="forestwatch-rule") as pool:
            list(pool.map(strip, range(0, height, rows)))
        return forest

    return ["red", "nir", swir], classify


def no_history_error(tile: Tile) -> NoDataError:
    """The error of a rule mask without any acquisition in the history period."""
    return NoDataError(
        f"tile {tile.id}: no acquisition in the history period to derive the forest mask "
        "from; widen history or use forest_mask.method: file."
    )


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
    with at least ``min_observations`` clear observations (after the screening of low
    outliers, ``screen_low_outliers``; module docstring)."""
    if not items:
        raise no_history_error(tile)
    bands, classify = rule_classifier(rule, threads=threads)
    mask = mask_by_block(tile, items, bands=bands, classify=classify,
                         stac_cfg=stac_cfg, block_size=block_size, loader=loader,
                         threads=threads)
    log.info("tile %s: rule mask marks %.1f %% forest", tile.id, 100 * mask.mean())
    return mask


