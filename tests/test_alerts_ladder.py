"""The alert ladder on synthetic pixels whose answer is known: one pixel per status, for
each nrt monitor class (as OPERA DIST's confirmation test does).

Pixels (one row): 0 stays normal, 1 one anomaly at the last date (first detection),
2 anomalies at the last two dates (provisional), 3 a lasting drop (confirmed), 4 one
anomaly then normal observations (returned to normal), 5 not forest (no data).

IQR and CCDC count outliers, so their anomalies are drops far outside the band and their
normal observations the model's own prediction. EWMA, CuSum and MoSum carry a process, so
every observation is chosen (by bisection on a copy of the monitor) to put nrt's own
process at a given fraction of nrt's own boundary: 0.75 is past the documented anomaly
fraction (0.5) but no break, 0.1 is normal, 1.5 is a break.
"""

from __future__ import annotations

import copy
import datetime as dt
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forestwatch.alerts.anomaly import anomaly_strength
from forestwatch.alerts.ladder import (
    CONFIRMED,
    FIRST,
    NO_ALERT,
    NO_DATA,
    PROVISIONAL,
    RECOVERED,
    AlertLayers,
    AlertParams,
    observe,
)
from forestwatch.config import monitor_class
from forestwatch.monitor.forward import take_observation

EPOCH = dt.date(1970, 1, 1)
HISTORY = pd.date_range("2020-01-01", periods=146, freq="5D")
MONITOR_DAYS = [dt.date(2022, 1, 5) + dt.timedelta(days=5 * i) for i in range(8)]
#: per pixel, per monitoring day: "n" normal, "a" anomaly, "s" strong (a break)
PLAN = ["nnnnnnnn", "nnnnnnna", "nnnnnnaa", "nnnsssss", "nnnannnn", "nnnnnnnn"]
MASK = np.array([[1, 1, 1, 1, 1, 0]], dtype=np.uint8)
EXPECTED = [NO_ALERT, FIRST, PROVISIONAL, CONFIRMED, RECOVERED, NO_DATA]


def _days(d: dt.date) -> int:
    return (d - EPOCH).days


def _fitted(cls_name: str):
    rng = np.random.default_rng(1)
    season = 0.6 + 0.2 * np.sin(2 * np.pi * HISTORY.dayofyear.values / 365.25)
    values = (season[:, None, None] + rng.normal(0, 0.02, (len(HISTORY), 1, 6))).astype(
        np.float32)
    index = xr.DataArray(values, dims=("time", "y", "x"),
                         coords={"time": HISTORY.values, "y": [0.0], "x": np.arange(6.0)})
    params = {"trend": False, "harmonic_order": 1}
    if cls_name in ("IQR", "CCDC"):
        params["boundary"] = 3
    monitor = monitor_class(cls_name)(mask=MASK.copy(), **params)
    fit = {"method": "OLS"}
    if cls_name == "CCDC":
        fit["screen_outliers"] = None
    monitor.fit(index, **fit)
    if cls_name == "EWMA":
        monitor.process = np.zeros_like(monitor.process)  # start the chart at 0: exact
    return monitor


def _ratio_after(monitor, values: np.ndarray, day: dt.date) -> np.ndarray:
    m = copy.deepcopy(monitor)
    m.monitor(array=values.astype(np.float32), date=dt.datetime(day.year, day.month, day.day))
    with np.errstate(invalid="ignore", divide="ignore"):
        return -np.asarray(m.process, dtype=np.float64) / np.abs(m.boundary)


def _design(monitor, targets: np.ndarray, day: dt.date) -> np.ndarray:
    """Values putting the process at ``targets`` x boundary (loss direction), by bisection;
    pixels are independent in nrt, so all are solved at once."""
    pred = monitor.predict(dt.datetime(day.year, day.month, day.day)).astype(np.float64)
    # ratio decreases as the value rises; EWMA: within its extreme-outlier screen (10 sigma)
    half = 0.1 if type(monitor).__name__ == "EWMA" else 0.5
    lo, hi = pred - half, pred + half
    for _ in range(60):
        mid = (lo + hi) / 2
        too_low = _ratio_after(monitor, mid, day) > targets  # too much loss: raise the value
        lo = np.where(too_low, mid, lo)
        hi = np.where(too_low, hi, mid)
    return ((lo + hi) / 2).astype(np.float32)


def _run(cls_name: str) -> tuple[AlertLayers, object]:
    monitor = _fitted(cls_name)
    state = SimpleNamespace(monitor=monitor, alerts=AlertLayers.start(monitor.mask))
    params = AlertParams()
    for t, day in enumerate(MONITOR_DAYS):
        kinds = np.array([[plan[t] for plan in PLAN]])
        pred = monitor.predict(dt.datetime(day.year, day.month, day.day))
        if cls_name in ("IQR", "CCDC"):
            values = np.where(kinds == "n", pred, pred - 0.3)
        else:
            targets = np.select([kinds == "a", kinds == "s"], [0.75, 1.5], 0.1)
            values = _design(monitor, targets, day)
        take_observation(state.monitor, state.alerts,
                         np.ascontiguousarray(values, dtype=np.float32), day, params)
    return state.alerts, monitor


@pytest.mark.parametrize("cls_name", ["IQR", "CCDC", "EWMA", "CuSum", "MoSum"])
def test_one_pixel_per_status(cls_name):
    layers, monitor = _run(cls_name)
    assert layers.status[0].tolist() == EXPECTED
    assert (monitor.mask[0] == 3).tolist() == [False, False, False, True, False, False]
    first = [_days(d) for d in MONITOR_DAYS]
    confirm_at = 5 if cls_name in ("IQR", "CCDC") else 3  # 3rd outlier / first big step
    assert layers.first_date[0].tolist() == [0, first[7], first[6], first[3], first[3], 0]
    assert layers.confirmed_date[0].tolist() == [0, 0, 0, first[confirm_at], 0, 0]
    assert int(monitor.detection_date[0, 3]) == first[confirm_at]  # the same as nrt's
    assert layers.count[0, :3].tolist() == [0, 1, 2]
    assert layers.false_starts[0].tolist() == [0, 0, 0, 0, 1, 0]
    # every monitored pixel was observed at the last date but the confirmed one, which nrt
    # stops monitoring
    assert layers.last_date[0].tolist() == [first[7]] * 3 + [first[confirm_at], first[7], 0]
    conf = layers.confidence()[0]
    assert conf[0] == 0 and conf[4] == 0 and conf[5] == 0
    assert 0 < conf[1] < conf[2]  # more evidence, more confidence
    if cls_name in ("IQR", "CCDC"):
        np.testing.assert_allclose(layers.max_loss[0, 1:4], 0.3, atol=1e-5)
        assert conf[2] < conf[3]


@pytest.mark.parametrize("cls_name", ["EWMA", "CuSum", "MoSum"])
def test_process_monitors_anomaly_is_the_documented_fraction(cls_name):
    """strength is (-process / boundary) / process_fraction: 0.75 of the boundary is 1.5,
    0.1 is 0.2, whatever the class."""
    monitor = _fitted(cls_name)
    day = MONITOR_DAYS[0]
    targets = np.array([[0.75, 0.1, 0.75, 0.1, 0.3, 0.1]])
    values = _design(monitor, targets, day)
    residuals = values - monitor.predict(dt.datetime(day.year, day.month, day.day))
    monitor.monitor(array=values, date=dt.datetime(day.year, day.month, day.day))
    strength = anomaly_strength(monitor, residuals, process_fraction=0.5)
    np.testing.assert_allclose(strength[0, :5], [1.5, 0.2, 1.5, 0.2, 0.6], atol=1e-3)
    strength = anomaly_strength(monitor, residuals, process_fraction=0.25)
    np.testing.assert_allclose(strength[0, 4], 1.2, atol=1e-3)  # 0.3 > 0.25: anomalous


def test_observe_counts_a_new_episode_after_a_false_start():
    layers = AlertLayers.start(np.ones((1, 1), dtype=np.uint8))
    params = AlertParams(recovery_observations=2)
    seq = [(2.0, "2024-01-01"), (0.0, "2024-01-06"), (0.0, "2024-01-11"),
           (1.5, "2024-02-01"), (1.2, "2024-02-06")]
    for s, day in seq:
        observe(layers, observed=np.ones((1, 1), bool), strength=np.full((1, 1), s, np.float32),
                residuals=np.full((1, 1), -0.1 * s, np.float32),
                confirmed=np.zeros((1, 1), bool), day=dt.date.fromisoformat(day),
                params=params)
    assert layers.status[0, 0] == PROVISIONAL
    assert layers.false_starts[0, 0] == 1
    assert layers.first_date[0, 0] == _days(dt.date(2024, 2, 1))
    assert layers.count[0, 0] == 2
    np.testing.assert_allclose(layers.evidence[0, 0], 2.7, rtol=1e-6)
    np.testing.assert_allclose(layers.max_loss[0, 0], 0.15, rtol=1e-6)
    assert layers.confidence(confidence_half=3.0)[0, 0] == round(100 * 2.7 / 5.7)


def test_a_confirmation_without_an_earlier_anomaly_starts_and_confirms_its_episode():
    """nrt's breaks are two-sided; a greening break has no loss anomaly before it."""
    layers = AlertLayers.start(np.ones((1, 1), dtype=np.uint8))
    observe(layers, observed=np.ones((1, 1), bool), strength=np.full((1, 1), -3.0, np.float32),
            residuals=np.full((1, 1), 0.2, np.float32), confirmed=np.ones((1, 1), bool),
            day=dt.date(2024, 5, 1), params=AlertParams())
    assert layers.status[0, 0] == CONFIRMED
    assert layers.first_date[0, 0] == layers.confirmed_date[0, 0] == _days(dt.date(2024, 5, 1))
    assert layers.count[0, 0] == 1


def test_a_format_2_state_gets_its_layers_from_nrt_mask():
    mask = np.array([[0, 1, 2, 3, 4]], dtype=np.uint8)
    dates = np.array([[0, 0, 0, 19800, 0]], dtype=np.uint16)
    layers = AlertLayers.from_monitor(mask, dates)
    assert layers.status[0].tolist() == [NO_DATA, NO_ALERT, NO_DATA, CONFIRMED, NO_DATA]
    assert layers.confirmed_date[0, 3] == layers.first_date[0, 3] == 19800


def test_a_confirmed_alert_is_dated_from_the_run_of_anomalies_that_confirmed_it():
    """An isolated anomaly, one normal observation (not enough to end the episode), then
    the disturbance: three anomalies, confirmed at the third. The provisional alert is
    dated from the isolated anomaly; once confirmed, from the start of the run."""
    layers = AlertLayers.start(np.ones((1, 1), dtype=np.uint8))
    params = AlertParams(recovery_observations=2)
    one = np.ones((1, 1), bool)
    seq = [("2024-03-01", 2.0, False), ("2024-03-06", 0.0, False),
           ("2024-03-11", 3.0, False), ("2024-03-16", 3.0, False), ("2024-03-21", 3.0, True)]
    for day, s, conf in seq:
        observe(layers, observed=one, strength=np.full((1, 1), s, np.float32),
                residuals=np.full((1, 1), -0.1 * s, np.float32), confirmed=one & conf,
                day=dt.date.fromisoformat(day), params=params)
        if day == "2024-03-16":
            assert layers.status[0, 0] == PROVISIONAL
            assert layers.first_date[0, 0] == _days(dt.date(2024, 3, 1))
    assert layers.status[0, 0] == CONFIRMED
    assert layers.first_date[0, 0] == _days(dt.date(2024, 3, 11))
    assert layers.confirmed_date[0, 0] == _days(dt.date(2024, 3, 21))
    assert layers.count[0, 0] == 4  # the episode's evidence is all kept


def _observe_array_wide(layers, *, observed, strength, residuals, confirmed, day, params):
    """The ladder as array-wide numpy steps (what :func:`observe` did before its compiled
    pass): the oracle its pass is compared with, pixel by pixel."""
    lut = {}
    for name, codes in (("open", (NO_ALERT, FIRST, PROVISIONAL, RECOVERED)),
                        ("new", (NO_ALERT, RECOVERED)), ("unconfirmed", (FIRST, PROVISIONAL))):
        lut[name] = np.zeros(256, dtype=bool)
        lut[name][list(codes)] = True
    days = np.int32(_days(day))
    st = layers.status
    open_or_none = lut["open"][st]
    with np.errstate(invalid="ignore"):
        anomalous = observed & open_or_none & (strength >= 1.0)
    normal = observed & open_or_none & ~anomalous
    new = anomalous & lut["new"][st]
    layers.first_date[new] = days
    for name in ("count", "max_loss", "evidence"):
        getattr(layers, name)[new] = 0
    st[new] = FIRST
    layers.count[anomalous] = np.minimum(layers.count[anomalous].astype(np.int64) + 1,
                                         np.iinfo(np.uint16).max).astype(np.uint16)
    loss = np.maximum(-np.asarray(residuals, dtype=np.float32), 0)
    layers.max_loss[anomalous] = np.maximum(layers.max_loss[anomalous], loss[anomalous])
    layers.evidence[anomalous] += np.minimum(strength[anomalous], 3.0)
    layers.run_start[new | (anomalous & (layers.normal_run > 0))] = days
    layers.normal_run[anomalous] = 0
    st[anomalous & (layers.count >= 2)] = PROVISIONAL
    waiting = normal & lut["unconfirmed"][st]
    layers.normal_run[waiting] = np.minimum(layers.normal_run[waiting].astype(np.int64) + 1,
                                            255).astype(np.uint8)
    back = waiting & (layers.normal_run >= params.recovery_observations)
    st[back] = RECOVERED
    layers.false_starts[back] += 1
    conf = confirmed & (st != CONFIRMED)
    rerun = conf & anomalous & lut["unconfirmed"][st] & (layers.run_start > layers.first_date)
    layers.first_date[rerun] = layers.run_start[rerun]
    unstarted = conf & ~lut["unconfirmed"][st]
    layers.first_date[unstarted] = days
    layers.run_start[unstarted] = days
    layers.count[unstarted] = 1
    layers.max_loss[unstarted] = loss[unstarted]
    layers.evidence[unstarted] = 1.0
    st[conf] = CONFIRMED
    layers.confirmed_date[conf] = days
    layers.last_date[observed] = days


@pytest.mark.parametrize("recovery", [1, 2, 3])
@pytest.mark.parametrize("strength_dtype", [np.float32, np.float64])
def test_observe_takes_every_pixel_as_the_array_wide_steps_did(recovery, strength_dtype):
    # 60 days on 40 x 50 pixels of every status, with anomalies, strong ones above the
    # cap, NaN strengths and residuals, and confirmations with and without an episode
    rng = np.random.default_rng(recovery)
    shape = (40, 50)
    mask = rng.choice(np.array([0, 1, 1, 1], dtype=np.uint8), size=shape)
    ours, theirs = AlertLayers.start(mask), AlertLayers.start(mask)
    params = AlertParams(recovery_observations=recovery)
    seen: set[int] = set()
    for k in range(60):
        day = dt.date(2023, 1, 1) + dt.timedelta(days=5 * k)
        observed = (rng.random(shape) < 0.7) & (mask == 1)
        strength = rng.choice(np.array([0.2, 0.9, 1.0, 1.5, 4.0, np.nan]), size=shape,
                              p=[0.3, 0.2, 0.1, 0.2, 0.1, 0.1]).astype(strength_dtype)
        residuals = rng.normal(-0.1, 0.1, shape)
        residuals[rng.random(shape) < 0.05] = np.nan
        confirmed = observed & (rng.random(shape) < 0.05)
        for layers, take in ((ours, observe), (theirs, _observe_array_wide)):
            take(layers, observed=observed, strength=strength, residuals=residuals,
                 confirmed=confirmed, day=day, params=params)
        for name in AlertLayers.DTYPES:
            np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name),
                                          err_msg=f"{name} on day {k}")
        seen |= set(np.unique(ours.status).tolist())
    assert {NO_ALERT, FIRST, PROVISIONAL, CONFIRMED, RECOVERED, NO_DATA} <= seen, seen
    assert ours.false_starts.max() > 0
    # a new run of anomalies within an episode (after a normal observation that did not
    # end it) needs room for one: recovery_observations of 2 or more
    assert (ours.first_date != ours.run_start).any() == (recovery > 1)


def test_observe_takes_one_row_of_pixels():
    # the strategy's sample pixels: 1-D layers are updated in place as one row
    layers = AlertLayers.start(np.ones(3, dtype=np.uint8))
    observe(layers, observed=np.array([True, True, False]),
            strength=np.array([2.0, 0.5, 2.0], dtype=np.float32),
            residuals=np.array([-0.3, 0.0, -0.3]), confirmed=np.zeros(3, dtype=bool),
            day=dt.date(2023, 1, 1), params=AlertParams())
    assert layers.status.tolist() == [FIRST, NO_ALERT, NO_ALERT]
    assert layers.max_loss[0] == np.float32(0.3)
