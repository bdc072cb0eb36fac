"""nrt's IQR fit, the same arrays byte for byte, with its data preparation compiled and
its residual quantiles computed for the fitted pixels only, on every core.

nrt 0.3.0's ``IQR.fit`` runs ``IQR._fit`` and then ``nan_percentile_axis0(residuals,
[75, 25])``: one ``np.nanpercentile`` per pixel, in one thread holding the GIL, for every
pixel of the block, monitored or not (a pixel nrt did not fit has residuals of 0, so
quantiles of 0). On the 1000 x 1000 px benchmark tile that was 5 s of a 13 s fit
(BENCHMARKS.md, "Sampling in one pass, the IQR fit's quantiles on every core"); the same
``np.nanpercentile``, compiled by numba as nrt's is, now runs over the fitted pixels only,
in threads.

``_fit`` itself, for the default ``OLS`` fit without outlier screening, spent ~1.5 s of
main-thread numpy per 512 x 512 px block of 124 dates around nrt's compiled least squares:
a float64 copy of the whole cube, boolean gathers of the monitored and the long enough
series, ``count_nonzero`` over a NaN map, the residuals scattered into a cube-sized
float32 array. :func:`fit_iqr` makes those steps in compiled passes on the job's threads
(:func:`_count_observed`, :func:`_gather_series`, :func:`_residuals32`) around the same
nrt calls (``nanlstsq`` and the ``np.dot`` of ``ols``), and keeps only the fitted pixels'
residuals. Other fit methods and screenings go through nrt's ``_fit`` unchanged.

Written against nrt 0.3.0 (pinned in ``pyproject.toml``): ``IQR.fit``'s body is four
statements and ``_fit``'s OLS path a dozen; ``tests/test_monitoring.py`` compares both
paths with nrt's own ``IQR.fit`` byte for byte, which checks a new nrt version before the
pin moves.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import xarray as xr

from .._threads import in_parts

#: the quantiles nrt's IQR keeps, in the order its fit computes them (q75, q25)
_PERCENTILES = np.array([75.0, 25.0])


@numba.njit(nogil=True, cache=True)
def _percentiles_of(residuals, columns, targets, percentiles, out):  # pragma: no cover
    """``out[:, targets[j]] = np.nanpercentile(residuals[:, columns[j]], percentiles)``
    for each ``j``, as nrt's ``nan_percentile_axis0`` computes it. ``residuals`` (time,
    pixels), ``columns`` and ``targets`` int64, ``out`` float64 (len(percentiles),
    pixels of the block)."""
    for j in range(columns.shape[0]):
        out[:, targets[j]] = np.nanpercentile(residuals[:, columns[j]], percentiles)


@numba.njit(nogil=True, cache=True)
def _count_observed(values, pixels, counts):  # pragma: no cover (numba)
    """``counts[j]`` = the dates of ``values`` (time, pixels of the block) that are not
    NaN at pixel ``pixels[j]``: nrt's ``count_nonzero(~isnan(y_flat), axis=0)``."""
    for t in range(values.shape[0]):
        row = values[t]
        for j in range(pixels.shape[0]):
            if not np.isnan(row[pixels[j]]):
                counts[j] += 1


@numba.njit(nogil=True, cache=True)
def _gather_series(values, pixels, first, last, out):  # pragma: no cover (numba)
    """``out[t, j] = float64(values[t, pixels[j]])`` for the dates ``first`` to ``last``
    (exclusive): nrt's ``y.astype(float64)[:, mask]`` for the pixels it fits."""
    for t in range(first, last):
        row = values[t]
        for j in range(pixels.shape[0]):
            out[t, j] = np.float64(row[pixels[j]])


@numba.njit(nogil=True, cache=True)
def _residuals32(fitted, series, first, last, out):  # pragma: no cover (numba)
    """``out[t] = float32(fitted[t] - series[t])`` for the dates ``first`` to ``last``:
    nrt's ``np.dot(X, beta) - y`` stored into its float32 residuals (one subtraction and
    one rounding per value, as numpy makes them)."""
    for t in range(first, last):
        for j in range(series.shape[1]):
            out[t, j] = np.float32(fitted[t, j] - series[t, j])


def _percentiles(residuals: np.ndarray, columns: np.ndarray, targets: np.ndarray,
                 n_pixels: int, threads: int) -> np.ndarray:
    """:data:`_PERCENTILES` of the ``residuals`` (time, columns) of pixels ``targets`` of
    the block, 0 for its other pixels (whose residuals nrt leaves at 0): float64 (2,
    ``n_pixels``). ``threads`` threads take a share of the pixels each (not numba's
    ``parallel`` mode, which compiles longer still: this kernel's compilation, once per
    environment, is ~13 s)."""
    out = np.zeros((len(_PERCENTILES), n_pixels))
    in_parts(lambda i, j: _percentiles_of(residuals, columns[i:j], targets[i:j],
                                          _PERCENTILES, out), len(columns), threads)
    return out


def fit_iqr(monitor, dataarray: xr.DataArray, method: str = "OLS", **kwargs) -> None:
    """Fit nrt ``IQR`` ``monitor`` on ``dataarray`` (time, y, x) as ``monitor.fit`` does,
    the same arrays byte for byte (module docstring); ``monitor`` is updated in place
    (``beta``, ``q25``, ``q75``, and ``mask``: 4 for series too short to fit). ``kwargs``
    are ``fit``'s (``n_threads``, ``screen_outliers``, ...)."""
    threads = kwargs.get("n_threads", 1)
    monitor.set_xy(dataarray)
    design = monitor.build_design_matrix(dataarray, trend=monitor.trend,
                                         harmonic_order=monitor.harmonic_order)
    if method == "OLS" and not kwargs.get("screen_outliers"):
        beta, residuals, fitted = _fit_ols(monitor, design, dataarray, threads)
        columns = np.arange(len(fitted))
    else:
        # the pixels nrt fits: its ``_fit`` may mark some 2 (unstable history, ROC and
        # CCDC-stable) and still gives them residuals
        fitted = np.flatnonzero(np.asarray(monitor.mask).ravel() == 1)
        beta, residuals = monitor._fit(design, dataarray=dataarray, method=method, **kwargs)
        residuals = np.ascontiguousarray(residuals).reshape(residuals.shape[0], -1)
        columns = fitted
    monitor.beta = beta
    shape = beta.shape[1:]
    q75, q25 = _percentiles(residuals, columns, fitted, shape[0] * shape[1], threads)
    monitor.q75 = q75.reshape(shape)
    monitor.q25 = q25.reshape(shape)


def _fit_ols(monitor, design: np.ndarray, dataarray: xr.DataArray, threads: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nrt's ``_fit`` with ``method="OLS"`` and no screening: ``beta`` (float32, (regressors,
    y, x), 0 where not fitted), the fitted pixels' residuals (float32, (time, fitted)) and
    the fitted pixels' flat indices (int64, ascending). nrt's checks, warning and error,
    its mask update (4: too short a series) and its ``nanlstsq`` and ``np.dot``."""
    from nrt.stats import nanlstsq

    numba.set_num_threads(threads)
    times = dataarray.time.values
    if not np.all(times[1:] >= times[:-1]):
        raise ValueError("Time dimension of dataarray has to be sorted chronologically.")
    values = np.ascontiguousarray(dataarray.values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    X = design.astype(np.float64)
    n_dates, rows, cols = values.shape
    if monitor.mask is None:
        monitor.mask = np.ones((rows, cols), dtype=np.uint8)
    if getattr(monitor, "fit_start", False) is None:
        start_date = times.min().astype("datetime64[D]").astype("int")
        monitor.fit_start = np.full_like(monitor.mask, start_date, dtype=np.uint16)
    flat = values.reshape(n_dates, -1)
    monitored = np.flatnonzero(monitor.mask.ravel() == 1)
    counts = np.zeros(len(monitored), dtype=np.int64)
    in_parts(lambda i, j: _count_observed(flat, monitored[i:j], counts[i:j]),
             len(monitored), threads)
    likely_singular = counts < (X.shape[1] * 1.5)
    amount = np.count_nonzero(likely_singular)
    if amount:
        monitor.mask.flat[monitored[likely_singular]] = 4
        warnings.warn(f"{amount} time-series were shorter than 1.5x the "
                      f"number of regressors and were masked.", stacklevel=2)
    if not np.any(monitor.mask == 1):
        raise ValueError(f"There are no time-series with sufficient ({int(X.shape[1]*1.5)}) "
                         "data points.")
    fitted = monitored[~likely_singular]
    series = np.empty((n_dates, len(fitted)))
    in_parts(lambda i, j: _gather_series(flat, fitted, i, j, series), n_dates, threads)
    beta_flat = nanlstsq(X, series)
    modelled = np.dot(X, beta_flat)
    residuals = np.empty((n_dates, len(fitted)), dtype=np.float32)
    in_parts(lambda i, j: _residuals32(modelled, series, i, j, residuals), n_dates, threads)
    beta = np.zeros((X.shape[1], rows, cols), dtype=np.float32)
    beta.reshape(X.shape[1], -1)[:, fitted] = beta_flat
    return beta, residuals, fitted
