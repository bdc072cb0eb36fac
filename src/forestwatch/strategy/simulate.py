"""Run one candidate on pixel series in memory: fit on the history, monitor every later
day with the alert ladder, exactly as the workflow's ``fit`` and ``fast_forward`` do
(:func:`forestwatch.monitor.build_monitor`, :func:`~forestwatch.monitor.fit_kwargs`,
:func:`~forestwatch.monitor.take_observation`), but on a row of sample pixels.

Consensus candidates (:func:`combine`) are made from their members' outcomes: at least
``k`` members at a status or beyond, dated by the k-th earliest member.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np

from ..alerts.consensus import consensus_outcome
from ..alerts.ladder import NO_DATA, AlertLayers, AlertParams
from ..monitor import build_monitor, fit_monitor, take_observation
from ..monitor.regional import RegionalScreen
from ..stac import spectral_index
from .candidates import Candidate, Consensus
from .series import PixelSeries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """Per pixel, at the end of monitoring: ``status`` (uint8, the ladder's codes),
    ``first_date`` and ``confirmed_date`` (int32 days since 1970, 0 = none)."""

    status: np.ndarray
    first_date: np.ndarray
    confirmed_date: np.ndarray

    @classmethod
    def nothing(cls, n: int) -> Outcome:
        return cls(np.full(n, NO_DATA, np.uint8), np.zeros(n, np.int32), np.zeros(n, np.int32))

    def take(self, flat: np.ndarray) -> Outcome:
        """The outcome at these positions (int64 indices into the pixels)."""
        return Outcome(self.status[flat], self.first_date[flat], self.confirmed_date[flat])


def simulate(candidate: Candidate, series: PixelSeries, cfg: dict, params: AlertParams
             ) -> Outcome:
    """Fit ``candidate`` on the series' days up to ``history.end`` (inclusive) and monitor
    the days after it up to ``fast_forward.until``; ``cfg`` is the workflow config. A
    candidate with a regional screen (:mod:`forestwatch.monitor.regional`) needs a
    whole-tile series (the screen looks at each pixel's neighbourhood)."""
    n = len(series.pixels)
    end = dt.date.fromisoformat(str(cfg["history"]["end"]))
    until = dt.date.fromisoformat(str(cfg["fast_forward"]["until"]))
    days = np.array(series.days, dtype="datetime64[D]")
    n_hist = int(np.searchsorted(days, np.datetime64(end, "D"), side="right"))
    n_end = int(np.searchsorted(days, np.datetime64(until, "D"), side="right"))
    if n == 0 or n_hist == 0:
        return Outcome.nothing(n)
    run_cfg = candidate.config(cfg)
    bands = sorted(series.bands)
    hist = series.dataset(bands, slice(0, n_hist))
    index = spectral_index(hist, candidate.index)
    index = index.copy(data=np.ascontiguousarray(index.values))
    mask = series.pixels.monitored.astype(np.uint8).reshape(series.grid_shape)
    monitor = build_monitor(candidate.monitor, mask)
    screen = RegionalScreen.from_config(run_cfg)
    if screen is not None and series.shape is None:
        raise ValueError(f"candidate {candidate.name}: the regional screen needs whole tiles")
    try:
        fit_monitor(monitor, run_cfg, index, hist, 1)
    except ValueError as err:
        if "no time-series with sufficient" not in str(err):
            raise
        log.warning("candidate %s, tile %s: no pixel has enough clear observations to fit",
                    candidate.name, series.pixels.tile_id)
        return Outcome.nothing(n)
    alerts = AlertLayers.start(monitor.mask)
    later = series.dataset(bands, slice(n_hist, n_end))
    values = spectral_index(later, candidate.index).values
    for i, day in enumerate(series.days[n_hist:n_end]):
        array = np.ascontiguousarray(values[i])
        if np.isfinite(array[monitor.mask == 1]).any():
            take_observation(monitor, alerts, array, day, params, screen)
    return Outcome(status=alerts.status.ravel().copy(),
                   first_date=alerts.first_date.ravel().copy(),
                   confirmed_date=alerts.confirmed_date.ravel().copy())


def combine(consensus: Consensus, members: list[Outcome]) -> Outcome:
    """The consensus of ``members`` (one outcome each, same pixels), by the workflow's own
    rule (:func:`forestwatch.alerts.consensus.consensus_outcome`): the highest level at
    least ``k`` members reached with an open alert, dated by the k-th earliest member."""
    status, first, confirmed, _ = consensus_outcome(
        np.stack([m.status for m in members]), np.stack([m.first_date for m in members]),
        np.stack([m.confirmed_date for m in members]), consensus.k)
    return Outcome(status=status, first_date=first, confirmed_date=confirmed)


__all__ = ["Outcome", "simulate", "combine"]
