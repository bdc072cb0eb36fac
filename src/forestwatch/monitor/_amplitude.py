"""The range of a fitted model's predictions over a few dates, per pixel, compiled: the
seasonal amplitude of :func:`forestwatch.monitor.regional.seasonal_amplitude`, computed
on every daily update of a tile with ``monitor.regional_screening.by_seasonality``.

Its own module so that importing :mod:`forestwatch.monitor` does not import numba.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def prediction_range(X, beta, out):  # pragma: no cover (numba)
    """``out[p]``: the largest minus the smallest of ``X[d] . beta[:, p]`` over the dates
    ``d``, in float32 as nrt's ``predict``; NaN products are passed over (``-inf`` when
    every one is NaN). Pixels go a cache-sized run at a time, each date's products over
    the run in loops over slices, which LLVM vectorises (indexing ``beta[k, start + i]``
    instead kept them scalar: 19 ms against 4.7 ms for 1,000,000 px and 12 dates)."""
    n_dates, n_regressors = X.shape
    n = beta.shape[1]
    run = 4096
    value = np.empty(run, dtype=np.float32)
    low = np.empty(run, dtype=np.float32)
    high = np.empty(run, dtype=np.float32)
    for start in range(0, n, run):
        m = min(run, n - start)
        lo, hi, va = low[:m], high[:m], value[:m]
        lo[:] = np.inf
        hi[:] = -np.inf
        for d in range(n_dates):
            b = beta[0, start:start + m]
            x = np.float32(X[d, 0])
            for i in range(m):
                va[i] = x * b[i]
            for k in range(1, n_regressors):
                b = beta[k, start:start + m]
                x = np.float32(X[d, k])
                for i in range(m):
                    va[i] += x * b[i]
            for i in range(m):
                v = va[i]
                lo[i] = v if v < lo[i] else lo[i]
                hi[i] = v if v > hi[i] else hi[i]
        o = out[start:start + m]
        for i in range(m):
            o[i] = hi[i] - lo[i]
