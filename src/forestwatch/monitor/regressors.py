"""nrt's design matrix of given dates, and its ``predict(date)``, without pandas.

nrt builds one date's regressors (``BaseNrt._regressors``, called by ``predict``) through
``pandas.to_datetime`` of a dict of years, months and days, twice per call: ~26 ms per
date, where the matrix product is well under a millisecond on a 150 x 150 px tile. A
fast-forward calls it once per monitored day and monitor, so on the demo's tiles it was a
fifth of a tile's fit-and-forward job (BENCHMARKS.md, "Per-call costs"). The functions
here compute the same float64 values (tested equal, bit for bit, to nrt's over every day
of 2015-2032) with integer nanoseconds in numpy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

#: nrt's trend origin, ``pd.Timestamp(1970)``: 1,970 *nanoseconds* after the epoch, so its
#: trend regressor (whole days since that instant, floored) is one less than the days
#: since 1970-01-01 for a date at midnight. Kept, since the fitted ``beta`` expects it.
_TREND_ORIGIN_NS = 1970
_DAY_NS = 86_400 * 10**9


def _ns(date: dt.date | dt.datetime | np.datetime64) -> int:
    """Nanoseconds since the epoch (int) of a date (midnight) or naive datetime."""
    return int(np.datetime64(date, "ns").astype(np.int64))


def regressors(dates: Sequence[dt.date | dt.datetime | np.datetime64], *, trend: bool,
               harmonic_order: int) -> np.ndarray:
    """``nrt.utils.build_regressors`` of ``dates`` (float64, ``(len(dates), 1 + trend + 2 *
    harmonic_order)``: intercept, trend in days, cosines then sines of the decimal year),
    one row per date in the order given (nrt sorts them first)."""
    ns = np.array([_ns(d) for d in dates], dtype=np.int64)
    X = np.zeros((len(ns), 1 + int(trend) + 2 * harmonic_order), dtype=float)
    X[:, 0] = 1
    if trend:
        X[:, 1] = (ns - _TREND_ORIGIN_NS) // _DAY_NS
    if harmonic_order:
        years = ns.astype("datetime64[ns]").astype("datetime64[Y]")
        first = years.astype("datetime64[ns]").astype(np.int64)  # 1 January, 00:00
        # 31 December, 00:00: the next 1 January less a day
        last = ((years + np.timedelta64(1, "Y")).astype("datetime64[D]")
                - np.timedelta64(1, "D")).astype("datetime64[ns]").astype(np.int64)
        # nrt: years + (dates - 1 January) / (31 December - 1 January), timedelta64[ns]
        # divided as float64, then added to the integer year
        ddates = (years.astype(np.int64) + 1970) + (ns - first).astype(np.float64) / (
            last - first).astype(np.float64)
        harmonics = np.empty((len(ns), harmonic_order))
        for i in range(harmonic_order):
            harmonics[:, i] = 2 * np.pi * ddates * (i + 1)
        X[:, 1 + int(trend):] = np.concatenate([np.cos(harmonics), np.sin(harmonics)], 1)
    return X


def predict(monitor, date: dt.date | dt.datetime) -> np.ndarray:
    """What the fitted nrt ``monitor``'s ``predict(date)`` returns (its regressors of
    ``date`` times ``beta``, the monitor's 2-D shape), with :func:`regressors`; a monitor
    without ``trend``, ``harmonic_order`` or a 3-D ``beta`` is asked itself."""
    beta = getattr(monitor, "beta", None)
    trend, order = getattr(monitor, "trend", None), getattr(monitor, "harmonic_order", None)
    if trend is None or order is None or not isinstance(beta, np.ndarray) or beta.ndim != 3:
        return monitor.predict(date)
    X = regressors([date], trend=trend, harmonic_order=order)
    if X.shape[1] != beta.shape[0]:
        return monitor.predict(date)
    flat = beta.reshape(beta.shape[0], beta.shape[1] * beta.shape[2])
    return np.dot(X, flat).reshape(beta.shape[1:])


__all__ = ["regressors", "predict"]
