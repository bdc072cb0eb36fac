"""nrt's regressors and prediction computed without pandas (forestwatch.monitor.regressors):
the same float64 values as nrt's own, bit for bit, since the fitted coefficients and every
residual of the fast-forward depend on them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from nrt.monitor.iqr import IQR
from nrt.utils import build_regressors

from forestwatch.monitor.regressors import predict, regressors

DAYS = [dt.date(2015, 1, 1) + dt.timedelta(days=d) for d in range(18 * 365 + 5)]


@pytest.mark.parametrize("trend", [True, False])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_regressors_equal_nrts_for_every_day_of_18_years(trend, order):
    ours = regressors(DAYS, trend=trend, harmonic_order=order)
    theirs = build_regressors(pd.DatetimeIndex(DAYS), trend=trend, harmonic_order=order)
    assert ours.dtype == theirs.dtype == np.float64
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs), np.abs(ours - theirs).max()


def test_regressors_keep_nrts_trend_origin_and_times_of_day():
    """nrt's trend counts whole days since ``pd.Timestamp(1970)``, 1,970 ns after the
    epoch: a date at midnight gets one day less than its days since 1970-01-01."""
    midnight = dt.datetime(2024, 3, 1)
    assert regressors([midnight], trend=True, harmonic_order=0)[0, 1] == (
        (midnight.date() - dt.date(1970, 1, 1)).days - 1)
    times = [dt.datetime(2020, 2, 29, 10, 30), dt.datetime(2021, 12, 31, 23, 59, 59),
             np.datetime64("2023-07-01T06:00")]
    assert np.array_equal(regressors(times, trend=True, harmonic_order=3),
                          build_regressors(pd.DatetimeIndex(times), harmonic_order=3))


def _fitted_iqr(trend: bool, order: int) -> IQR:
    rng = np.random.default_rng(3)
    dates = pd.date_range("2020-01-01", periods=90, freq="5D")
    t = np.arange(len(dates))[:, None, None]
    values = 0.6 + 0.1 * np.sin(2 * np.pi * t / 73) + rng.normal(0, 0.02, (len(dates), 7, 9))
    values[rng.random(values.shape) < 0.2] = np.nan
    data = xr.DataArray(values.astype(np.float32), dims=("time", "y", "x"),
                        coords={"time": dates, "y": np.arange(7), "x": np.arange(9)})
    monitor = IQR(trend=trend, harmonic_order=order)
    monitor.fit(dataarray=data, method="OLS")
    return monitor


@pytest.mark.parametrize(("trend", "order"), [(True, 2), (False, 3), (True, 0)])
def test_predict_equals_nrts_predict(trend, order):
    monitor = _fitted_iqr(trend, order)
    for day in (dt.datetime(2021, 5, 17), dt.datetime(2024, 2, 29), dt.datetime(2022, 12, 31)):
        ours, theirs = predict(monitor, day), monitor.predict(day)
        assert ours.shape == theirs.shape == (7, 9)
        assert np.array_equal(ours, theirs, equal_nan=True)


def test_predict_asks_a_monitor_without_regressors_itself():
    class Other:
        beta = None

        def predict(self, date):
            return np.full((2, 2), date.day, dtype=np.float32)

    assert np.array_equal(predict(Other(), dt.datetime(2024, 1, 5)), np.full((2, 2), 5))
