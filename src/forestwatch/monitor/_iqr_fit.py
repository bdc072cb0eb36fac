"""nrt's IQR fit, with its residual quantiles computed for the monitored pixels only and
on every core.

nrt 0.3.0's ``IQR.fit`` ends with ``nan_percentile_axis0(residuals, [75, 25])``: one
``np.nanpercentile`` per pixel, in one thread holding the GIL, for every pixel of the
block, monitored or not (a pixel outside the mask has residuals of 0, so quantiles of
0). On the 1000 x 1000 px benchmark tile that was 5 s of a 13 s fit (BENCHMARKS.md,
"Sampling in one pass, the IQR fit's quantiles on every core"). :func:`fit_iqr` makes
the same calls as ``IQR.fit`` (design matrix, nrt's own ``_fit``), then the same
``np.nanpercentile`` per pixel, compiled by numba as nrt's is, over the monitored pixels
only, in threads: the same arrays, byte for byte (``tests/test_monitoring.py``).

Written against nrt 0.3.0 (pinned in ``pyproject.toml``): ``IQR.fit``'s body is four
statements; that test checks a new nrt version before the pin moves.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import xarray as xr

#: the quantiles nrt's IQR keeps, in the order its fit computes them (q75, q25)
_PERCENTILES = np.array([75.0, 25.0])


@numba.njit(nogil=True, cache=True)
def _percentiles_of(residuals, pixels, percentiles, out):  # pragma: no cover (numba)
    """``out[:, i] = np.nanpercentile(residuals[:, i], percentiles)`` for each ``i`` of
    ``pixels``, as nrt's ``nan_percentile_axis0`` computes it. ``residuals`` (time,
    pixels), ``pixels`` int64, ``out`` float64 (len(percentiles), pixels)."""
    for j in range(pixels.shape[0]):
        i = pixels[j]
        out[:, i] = np.nanpercentile(residuals[:, i], percentiles)


def _monitored_percentiles(residuals: np.ndarray, monitored: np.ndarray, threads: int
                           ) -> np.ndarray:
    """:data:`_PERCENTILES` of the ``monitored`` pixels' residuals (time, pixels), 0 for
    the other pixels (whose residuals nrt leaves at 0): float64 (2, pixels). The kernel
    releases the GIL: ``threads`` threads take a share of the pixels each (not numba's
    ``parallel`` mode, which compiles longer still: this kernel's compilation, once per
    environment, is ~13 s)."""
    out = np.zeros((len(_PERCENTILES), residuals.shape[1]))
    shares = np.array_split(monitored, max(1, threads))
    with ThreadPoolExecutor(len(shares)) as pool:
        list(pool.map(lambda share: _percentiles_of(residuals, share, _PERCENTILES, out),
                      shares))
    return out


def fit_iqr(monitor, dataarray: xr.DataArray, method: str = "OLS", **kwargs) -> None:
    """Fit nrt ``IQR`` ``monitor`` on ``dataarray`` (time, y, x) as ``monitor.fit`` does,
    with its quantiles from :func:`_monitored_percentiles`; ``monitor`` is updated in
    place (``beta``, ``q25``, ``q75``). ``kwargs`` are ``fit``'s (``n_threads``,
    ``screen_outliers``, ...)."""
    # the pixels nrt fits: its ``_fit`` may mark some 2 (unstable history, ROC and
    # CCDC-stable) and still gives them residuals
    monitored = np.flatnonzero(np.asarray(monitor.mask).ravel() == 1)
    monitor.set_xy(dataarray)
    design = monitor.build_design_matrix(dataarray, trend=monitor.trend,
                                         harmonic_order=monitor.harmonic_order)
    beta, residuals = monitor._fit(design, dataarray=dataarray, method=method, **kwargs)
    monitor.beta = beta
    flat = np.ascontiguousarray(residuals).reshape(residuals.shape[0], -1)
    q75, q25 = _monitored_percentiles(flat, monitored, kwargs.get("n_threads", 1))
    monitor.q75 = q75.reshape(residuals.shape[1:])
    monitor.q25 = q25.reshape(residuals.shape[1:])
