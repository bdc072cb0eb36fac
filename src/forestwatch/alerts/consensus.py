"""A consensus of several monitors' alert ladders: alert where at least ``k`` agree.

A tile configured with ``consensus.members`` runs several monitors (another index, another
class); each keeps its own ladder (:class:`~forestwatch.alerts.ladder.AlertLayers`), and
the tile's alert layers, the ones every report, polygon and statistic reads, are their
consensus, made anew from the members' layers after every update by :func:`combine_layers`
(a pure function of them, so it never drifts from what the members say). The strategy run
scores consensus candidates with the same rule (:func:`consensus_outcome`).

Per pixel, with the members' layers stacked:

* **status**: the highest level (first detection < provisional < confirmed) that at least
  ``k`` members have reached with an open alert; a member whose alert returned to normal,
  or that has none, counts as no alert. When no level is reached but at least ``k``
  members have returned to normal, so is the consensus (status 4); no data where no
  member monitors the pixel;
* **dates**: the confirmation date is the k-th earliest member confirmation, the first
  detection the k-th earliest first date of the members with an open alert (for status 4,
  of those returned to normal): the day the k-th member joined;
* **evidence, anomaly count, largest loss, false starts**: the k-th largest among those
  members, so that the consensus is as sure as its k-th surest member; the date of the
  last observation is the latest of any member.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .ladder import CONFIRMED, FIRST, NO_ALERT, NO_DATA, PROVISIONAL, RECOVERED, AlertLayers

_OPEN = (FIRST, PROVISIONAL, CONFIRMED)


def _kth_smallest(values: np.ndarray, valid: np.ndarray, k: int, dtype) -> np.ndarray:
    """Along axis 0, the k-th smallest of ``values`` where ``valid``; 0 where fewer."""
    big = np.iinfo(np.int64).max
    masked = np.where(valid, values.astype(np.int64), big)
    kth = np.sort(masked, axis=0)[k - 1]
    return np.where(kth == big, 0, kth).astype(dtype)


def _kth_largest(values: np.ndarray, valid: np.ndarray, k: int, dtype) -> np.ndarray:
    """Along axis 0, the k-th largest of ``values`` where ``valid``; 0 where fewer."""
    masked = np.where(valid, values.astype(np.float64), -np.inf)
    kth = -np.sort(-masked, axis=0)[k - 1]
    return np.where(np.isfinite(kth), kth, 0).astype(dtype)


def consensus_outcome(status: np.ndarray, first_date: np.ndarray, confirmed_date: np.ndarray,
                      k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The consensus status and dates of members' stacked layers (axis 0 = member; status
    uint8 codes, dates int32 days since 1970). Returns (status, first date, confirmed date,
    which members count: bool, the members that have the consensus's episode)."""
    if not 1 <= k <= status.shape[0]:
        raise ValueError(f"k = {k} for {status.shape[0]} member(s)")
    open_ = np.isin(status, _OPEN)
    level = np.where(open_, status, NO_ALERT)
    reached = np.sort(level, axis=0)[::-1][k - 1].astype(np.uint8)
    episode = status == RECOVERED
    ended = (reached == NO_ALERT) & (episode.sum(axis=0) >= k)
    out = np.where(ended, RECOVERED, reached).astype(np.uint8)
    out[(status == NO_DATA).all(axis=0)] = NO_DATA
    # the members that carry the consensus's episode: open at the reached level or beyond
    counting = np.where(ended[None], episode, open_ & (level >= reached[None]))
    alerting = np.isin(out, _OPEN)
    confirmed = np.where(out == CONFIRMED,
                         _kth_smallest(confirmed_date, status == CONFIRMED, k, np.int32), 0)
    first = np.where(alerting | (out == RECOVERED),
                     _kth_smallest(first_date, np.where(ended[None], episode, open_), k,
                                   np.int32), 0)
    return out, first.astype(np.int32), confirmed.astype(np.int32), counting


def combine_layers(members: Sequence[AlertLayers], k: int) -> AlertLayers:
    """The consensus (module docstring) of the members' alert layers (same grid), new
    arrays; one member gives a copy of its layers."""
    stack = {name: np.stack([getattr(m, name) for m in members])
             for name in AlertLayers.DTYPES}
    status, first, confirmed, counting = consensus_outcome(
        stack["status"], stack["first_date"], stack["confirmed_date"], k)
    dtypes = AlertLayers.DTYPES
    has = np.isin(status, (*_OPEN, RECOVERED))
    out = {"status": status, "first_date": first, "confirmed_date": confirmed,
           "last_date": stack["last_date"].max(axis=0).astype(dtypes["last_date"]),
           "normal_run": np.zeros(status.shape, dtypes["normal_run"]),
           "run_start": first.copy()}
    for name in ("count", "max_loss", "evidence"):
        out[name] = np.where(has, _kth_largest(stack[name], counting, k, dtypes[name]),
                             0).astype(dtypes[name])
    out["false_starts"] = _kth_largest(stack["false_starts"], np.ones_like(counting), k,
                                       dtypes["false_starts"])
    return AlertLayers(**out)


def break_layers(mask: np.ndarray, alerts: AlertLayers) -> tuple[np.ndarray, np.ndarray]:
    """nrt's mask and detection-date layers for a consensus state's reports: the first
    member's mask codes (uint8; 0 not forest, 1 monitored, 2 unstable, 4 too few
    observations), with 3 where the consensus confirmed a break and 1 where only the first
    member did; the detection date (days since 1970, 0 = none) is the consensus's
    confirmation (int32). So the break layers and the accuracy assessment read the consensus."""
    confirmed = alerts.status == CONFIRMED
    out = np.where(mask == 3, 1, mask).astype(np.uint8)
    out[confirmed] = 3
    date = np.where(confirmed, alerts.confirmed_date, 0).astype(np.int32)
    return out, date


__all__ = ["combine_layers", "consensus_outcome", "break_layers"]
