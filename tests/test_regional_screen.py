"""The regional anomaly screen (forestwatch.monitor.regional) on a synthetic tile whose
answer is known: a transient drop over most of the tile (an early leaf fall) is not
confirmed, a local clear-cut is confirmed on the same day as without the screen, and a
permanent drop over most of the tile (a large storm) is confirmed after the hold. In mixed
forest (a quarter broadleaved, strongly seasonal), an early leaf fall of the broadleaved
stands is a quarter of the forest: held only when the screen compares each pixel with its
own seasonality (``by_seasonality``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forestwatch.alerts.ladder import CONFIRMED, FIRST, PROVISIONAL, AlertLayers, AlertParams
from forestwatch.config import MONITOR_DEFAULTS
from forestwatch.monitor import build_monitor, take_observation
from forestwatch.monitor.regional import RegionalScreen, otsu_threshold, seasonality_strata

SHAPE = (40, 40)
EPOCH = dt.date(1970, 1, 1)
SCREEN = RegionalScreen(window_px=21, max_share=0.3, hold_days=45)


SEASONAL = RegionalScreen(window_px=21, max_share=0.3, hold_days=45, by_seasonality=True)
#: mixed forest: every fourth column broadleaved (seasonal amplitude 0.25), conifers 0.05
BROADLEAVED = np.zeros(SHAPE, dtype=bool)
BROADLEAVED[:, ::4] = True
MIXED = np.where(BROADLEAVED, 0.25, 0.05)


def _season(days: pd.DatetimeIndex, amplitude=0.1) -> np.ndarray:
    """(dates, *amplitude's shape) index values: 0.7 + amplitude x a yearly sine."""
    wave = np.sin(2 * np.pi * days.day_of_year.values / 365.25)
    return 0.7 + np.multiply.outer(wave, np.asarray(amplitude, dtype=float))


def _run(drop: np.ndarray, drop_from: dt.date, drop_until: dt.date | None, screen,
         end: str = "2023-12-31", amplitude=0.1):
    """Fit an IQR on two clean years, monitor 2023 up to ``end`` with a 0.3 drop of the
    index on the ``drop`` pixels from ``drop_from`` (until ``drop_until``); returns the
    alert layers. ``amplitude``: the seasonal amplitude, per pixel or one value."""
    rng = np.random.default_rng(3)
    hist = pd.date_range("2021-01-01", "2022-12-31", freq="5D")
    amplitude = np.broadcast_to(np.asarray(amplitude, dtype=float), SHAPE)
    values = _season(hist, amplitude) + rng.normal(0, 0.01, (hist.size,) + SHAPE)
    da = xr.DataArray(values.astype(np.float32), dims=("time", "y", "x"),
                      coords={"time": hist, "y": np.arange(SHAPE[0], dtype=float),
                              "x": np.arange(SHAPE[1], dtype=float)})
    mon_cfg = {"class": "IQR", **MONITOR_DEFAULTS["IQR"]}
    monitor = build_monitor(mon_cfg, np.ones(SHAPE, dtype=np.uint8))
    monitor.fit(da, method="OLS")
    alerts = AlertLayers.start(monitor.mask)
    params = AlertParams()
    for day in pd.date_range("2023-01-05", end, freq="5D"):
        d = day.date()
        array = (_season(pd.DatetimeIndex([day]), amplitude)[0]
                 + rng.normal(0, 0.01, SHAPE)).astype(np.float32)
        if d >= drop_from and (drop_until is None or d < drop_until):
            array[drop] -= 0.3
        take_observation(monitor, alerts, np.ascontiguousarray(array), d, params, screen)
    return alerts


def _confirmed(alerts, where) -> float:
    return float((alerts.status[where] == CONFIRMED).mean())


def test_a_transient_regional_drop_is_not_confirmed():
    region = np.zeros(SHAPE, dtype=bool)
    region[:, :28] = True  # 70 % of the tile, 30 days
    start, end = dt.date(2023, 9, 1), dt.date(2023, 10, 1)
    plain = _run(region, start, end, None)
    screened = _run(region, start, end, SCREEN)
    assert _confirmed(plain, region) > 0.95  # the monitor alone confirms it
    assert _confirmed(screened, region) == 0.0
    # the ladder still takes the held anomalies: at the end of the drop they are open,
    # unconfirmed alerts of at least three anomalies
    during = _run(region, start, end, SCREEN, end="2023-09-30")
    assert (np.isin(during.status[region], (FIRST, PROVISIONAL))
            & (during.count[region] >= 3)).mean() > 0.95
    assert _confirmed(screened, ~region) == 0.0


def test_a_local_clear_cut_is_confirmed_on_the_same_day():
    cut = np.zeros(SHAPE, dtype=bool)
    cut[10:16, 10:16] = True  # 36 px of a 441 px window: 8 %
    start = dt.date(2023, 6, 1)
    plain = _run(cut, start, None, None)
    screened = _run(cut, start, None, SCREEN)
    assert _confirmed(plain, cut) == 1.0 and _confirmed(screened, cut) == 1.0
    np.testing.assert_array_equal(screened.confirmed_date[cut], plain.confirmed_date[cut])


def test_a_large_permanent_drop_is_confirmed_after_the_hold():
    storm = np.zeros(SHAPE, dtype=bool)
    storm[:, :28] = True
    start = dt.date(2023, 3, 1)
    plain = _run(storm, start, None, None)
    screened = _run(storm, start, None, SCREEN)
    assert _confirmed(plain, storm) == 1.0 and _confirmed(screened, storm) == 1.0
    delay = screened.confirmed_date[storm].astype(int) - plain.confirmed_date[storm]
    # held for hold_days after the run began, then boundary (3) more observations
    assert np.median(delay) == pytest.approx(SCREEN.hold_days, abs=10)
    # the first detection is not delayed: the ladder takes held anomalies
    np.testing.assert_array_equal(screened.first_date[storm], plain.first_date[storm])


def test_the_screen_is_off_for_process_monitors_and_without_a_window():
    base = {"grid": {"resolution": 20}, "monitor": {"class": "IQR", "regional_screening": {
        "window_m": 2000, "max_share": 0.3, "hold_days": 45}}}
    assert RegionalScreen.from_config(base) == RegionalScreen(101, 0.3, 45)
    seasonal = {**base["monitor"]["regional_screening"], "by_seasonality": True}
    assert RegionalScreen.from_config(
        {**base, "monitor": {**base["monitor"], "regional_screening": seasonal}}
    ) == RegionalScreen(101, 0.3, 45, by_seasonality=True)
    assert RegionalScreen.from_config(
        {**base, "monitor": {**base["monitor"], "class": "EWMA"}}) is None
    off = {**base["monitor"]["regional_screening"], "window_m": None}
    assert RegionalScreen.from_config(
        {**base, "monitor": {**base["monitor"], "regional_screening": off}}) is None


def test_an_early_leaf_fall_of_broadleaved_stands_is_held_by_seasonality():
    """A quarter of the forest (the broadleaved columns) drops for 30 days over 70 % of
    the tile: a quarter of every window, under max_share, so the screen over all forest
    lets the monitor confirm it; by seasonality it is all of the broadleaved forest."""
    leaf_fall = BROADLEAVED.copy()
    leaf_fall[:, 28:] = False
    start, end = dt.date(2023, 9, 1), dt.date(2023, 10, 1)
    all_forest = _run(leaf_fall, start, end, SCREEN, amplitude=MIXED)
    seasonal = _run(leaf_fall, start, end, SEASONAL, amplitude=MIXED)
    assert _confirmed(all_forest, leaf_fall) > 0.95
    assert _confirmed(seasonal, leaf_fall) == 0.0
    assert _confirmed(seasonal, ~leaf_fall) == 0.0


def test_a_local_clear_cut_in_mixed_forest_is_confirmed_on_the_same_day_by_seasonality():
    cut = np.zeros(SHAPE, dtype=bool)
    cut[10:16, 10:16] = True  # 12 of the ~110 broadleaved px of a window, 24 of ~330 others
    start = dt.date(2023, 6, 1)
    plain = _run(cut, start, None, None, amplitude=MIXED)
    seasonal = _run(cut, start, None, SEASONAL, amplitude=MIXED)
    assert _confirmed(plain, cut) == 1.0 and _confirmed(seasonal, cut) == 1.0
    np.testing.assert_array_equal(seasonal.confirmed_date[cut], plain.confirmed_date[cut])


def _mixed_history(*, seed: int) -> xr.DataArray:
    """Two years of the mixed forest's seasons every 5 days, with noise."""
    rng = np.random.default_rng(seed)
    hist = pd.date_range("2021-01-01", "2022-12-31", freq="5D")
    values = _season(hist, MIXED) + rng.normal(0, 0.01, (hist.size,) + SHAPE)
    return xr.DataArray(values.astype(np.float32), dims=("time", "y", "x"),
                        coords={"time": hist, "y": np.arange(SHAPE[0], dtype=float),
                                "x": np.arange(SHAPE[1], dtype=float)})


def test_seasonality_strata_split_broadleaved_from_conifers():
    da = _mixed_history(seed=5)
    mask = np.ones(SHAPE, dtype=np.uint8)
    mask[0, :] = 0  # not forest: no stratum
    monitor = build_monitor({"class": "IQR", **MONITOR_DEFAULTS["IQR"]}, mask)
    monitor.fit(da, method="OLS")
    strata = seasonality_strata(monitor)
    assert strata.dtype == np.uint8
    np.testing.assert_array_equal(strata[1:], BROADLEAVED[1:].astype(np.uint8))
    assert not strata[0].any()
    # computed once per monitor
    assert SEASONAL.strata_of(monitor) is SEASONAL.strata_of(monitor)
    assert SCREEN.strata_of(monitor) is None


@pytest.mark.parametrize("params", [{"harmonic_order": 1, "trend": False},
                                    {"harmonic_order": 2, "trend": True}])
def test_seasonal_amplitude_equals_nrts_predictions(params):
    """The one-matrix-product amplitude equals the range of nrt's own predict()."""
    from forestwatch.monitor.regional import _AMPLITUDE_DATES, seasonal_amplitude

    da = _mixed_history(seed=3)
    monitor = build_monitor({"class": "IQR", **{**MONITOR_DEFAULTS["IQR"], **params}},
                            np.ones(SHAPE, dtype=np.uint8))
    monitor.fit(da, method="OLS")
    predicted = np.stack([np.asarray(monitor.predict(d)) for d in _AMPLITUDE_DATES])
    expected = predicted.max(axis=0) - predicted.min(axis=0)
    np.testing.assert_allclose(seasonal_amplitude(monitor), expected, rtol=1e-5, atol=1e-6)
    assert float(expected.max()) > 0.05  # a seasonal signal, not zeros on both sides
    monitor.beta[:, 0, 0] = np.nan  # a pixel without a fit: no amplitude, not a stratum
    monitor.beta[1, 0, 1] = np.nan
    amplitude = seasonal_amplitude(monitor)
    assert amplitude[0, 0] == amplitude[0, 1] == -np.inf
    np.testing.assert_allclose(amplitude[1:], expected[1:], rtol=1e-5, atol=1e-6)


def test_otsu_threshold_separates_two_modes():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.1, 0.02, 6000), rng.normal(0.4, 0.05, 4000)])
    threshold = otsu_threshold(values)
    assert 0.18 < threshold < 0.3
    assert ((values > threshold) == (np.arange(values.size) >= 6000)).mean() > 0.999


def _share_with_scipy(observed, anomalous, window_px, strata=None):
    """The screen's share as it was computed before its compiled kernel: scipy's
    ``uniform_filter`` of the float32 masks, per stratum present among the anomalies."""
    from scipy import ndimage

    from forestwatch.monitor.regional import MIN_OBSERVED_SHARE

    def share(o, a):
        seen, hit = (ndimage.uniform_filter(m.astype(np.float32), window_px, mode="constant")
                     for m in (o, a))
        return np.divide(hit, seen, out=np.zeros_like(hit), where=seen >= MIN_OBSERVED_SHARE)

    if strata is None:
        return share(observed, anomalous)
    out = np.zeros(observed.shape, dtype=np.float32)
    for label in np.unique(strata[anomalous]):
        mine = strata == label
        np.copyto(out, share(observed & mine, anomalous & mine), where=mine)
    return out


def test_the_window_share_is_scipys_bit_for_bit():
    """The compiled share equals scipy's filters' to the last bit (so a pixel at
    max_share is screened as before), with and without strata, for windows smaller and
    larger than the tile, sparse and dense anomalies, strata in blocks or pixel by pixel."""
    rng = np.random.default_rng(11)
    reached = set()
    for _ in range(120):
        shape = tuple(int(n) for n in rng.integers(1, 70, 2))
        window = int(rng.choice([1, 3, 21, 101, 2 * int(rng.integers(1, 50)) + 1]))
        observed = rng.random(shape) < rng.random()
        anomalous = observed & (rng.random(shape) < rng.random() ** 2)
        if rng.random() < 0.5:
            strata = (rng.random(shape) < rng.random()).astype(np.uint8)
        else:  # in blocks, as seasonality strata are
            strata = np.zeros(shape, dtype=np.uint8)
            strata[:, : int(rng.integers(0, shape[1] + 1))] = 1
        screen = RegionalScreen(window_px=window, max_share=0.3, hold_days=45)
        for labels in (None, strata):
            got = screen._share(observed, anomalous, labels)
            expected = _share_with_scipy(observed, anomalous, window, labels)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
            reached |= {"a share between 0 and 1" if ((got > 0) & (got < 1)).any() else "",
                        "too little observed" if (observed & (got == 0)).any() else ""}
    assert reached >= {"a share between 0 and 1", "too little observed"}
    with pytest.raises(ValueError, match="2-D bool masks"):
        SCREEN._share(np.ones(5, dtype=bool), np.ones(5, dtype=bool), None)
    with pytest.raises(ValueError, match="2-D bool masks"):
        SCREEN._share(np.ones((5, 5), dtype=np.uint8), np.ones((5, 5), dtype=bool), None)
