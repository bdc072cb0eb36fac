"""Scores of a candidate against the samples, and the ranking.

Per sample, the map answer is the majority of its monitored pixels (a point sample has
one): confirmed when at least half are confirmed breaks, dated at the median of their
confirmation dates; the same for first detections (an open alert of any status, dated
at its first anomalous observation). A sample outside the forest mask is not monitored:
it is never detected and never a false alarm, as in the workflow.

Shares are weighted by the samples' weights (the area each stands for), so that with a
stratified sample they estimate the test area's shares (Stehman 2014's ratio
estimators); without strata every sample counts once.

* ``detected``: disturbed samples with a confirmed alert on or after the true date (the
  producer's accuracy of confirmed alerts); ``omission`` = 1 - detected; per type too;
* ``false_alarms``: stable samples with a confirmed alert;
* ``commission``: confirmed samples that are not disturbed samples detected on time;
  ``f1`` = 2 P R / (P + R) with P = 1 - commission and R = detected;
* ``first_detected`` and lags (median, 90th percentile, days, weighted) for first
  detections and confirmed alerts, and ``first_open_on_stable``: stable samples with an
  open unconfirmed alert at the end;
* ``type_mean``: the mean of the per-type detected shares (each type counts equally).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..alerts.ladder import CONFIRMED, FIRST, PROVISIONAL
from .samples import ScoringSamples
from .series import TilePixels
from .simulate import Outcome


@dataclass(frozen=True)
class SampleAnswers:
    """Per sample: ``confirmed`` / ``open`` (bool), their dates (int64 days, 0 = none),
    ``monitored`` (bool: at least one monitored pixel)."""

    confirmed: np.ndarray
    confirmed_date: np.ndarray
    open: np.ndarray
    first_date: np.ndarray
    open_unconfirmed: np.ndarray
    monitored: np.ndarray


def sample_answers(n_samples: int, pixels: list[TilePixels], outcomes: list[Outcome]
                   ) -> SampleAnswers:
    """Aggregate per-pixel outcomes (one per :class:`TilePixels`, same order) to samples."""
    sample = np.concatenate([p.sample for p in pixels]) if pixels else np.zeros(0, int)
    keep = sample >= 0
    sample = sample[keep]
    status = np.concatenate([o.status for o in outcomes])[keep]
    conf_d = np.concatenate([o.confirmed_date for o in outcomes]).astype(np.int64)[keep]
    first_d = np.concatenate([o.first_date for o in outcomes]).astype(np.int64)[keep]
    monitored = np.concatenate([p.monitored for p in pixels])[keep]
    n_mon = np.bincount(sample, weights=monitored, minlength=n_samples)
    is_conf = (status == CONFIRMED) & monitored
    is_open = np.isin(status, (FIRST, PROVISIONAL, CONFIRMED)) & monitored
    is_unconf = np.isin(status, (FIRST, PROVISIONAL)) & monitored
    share = {}
    for name, flag in (("conf", is_conf), ("open", is_open), ("unconf", is_unconf)):
        with np.errstate(invalid="ignore", divide="ignore"):
            share[name] = np.bincount(sample, weights=flag, minlength=n_samples) / n_mon
    conf_date = _median_by(sample, conf_d, is_conf, n_samples)
    first_date = _median_by(sample, first_d, is_open, n_samples)
    mon = n_mon > 0
    return SampleAnswers(
        confirmed=mon & (np.nan_to_num(share["conf"]) >= 0.5), confirmed_date=conf_date,
        open=mon & (np.nan_to_num(share["open"]) >= 0.5), first_date=first_date,
        open_unconfirmed=mon & (np.nan_to_num(share["unconf"]) >= 0.5), monitored=mon)


def _median_by(sample: np.ndarray, values: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.int64)
    if not valid.any():
        return out
    s, v = sample[valid], values[valid]
    order = np.lexsort((v, s))
    s, v = s[order], v[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    out[s[starts]] = v[(starts + ends - 1) // 2]
    return out


def _wshare(num: np.ndarray, den: np.ndarray, w: np.ndarray) -> float | None:
    total = float(w[den].sum())
    return round(float(w[num & den].sum()) / total, 4) if total else None


def _wquantile(values: np.ndarray, w: np.ndarray, q: float) -> float | None:
    if values.size == 0:
        return None
    order = np.argsort(values, kind="stable")
    v, cw = values[order], np.cumsum(w[order])
    return round(float(v[np.searchsorted(cw, q * cw[-1])]), 1)


@dataclass
class Scores:
    """One candidate's scores (shares 0..1, lags in days; None when undefined)."""

    name: str
    metrics: dict = field(default_factory=dict)
    area: dict | None = None

    def get(self, key: str):
        return self.metrics.get(key)


def score(name: str, samples: ScoringSamples, answers: SampleAnswers) -> Scores:
    """Scores of one candidate's answers (module docstring)."""
    w = samples.weight
    dist, stable = samples.disturbed, ~samples.disturbed
    on_time = answers.confirmed & (answers.confirmed_date >= samples.date)
    first_on_time = answers.open & (answers.first_date >= samples.date)
    detected = dist & on_time
    m: dict = {
        "detected": _wshare(on_time, dist, w),
        "false_alarms": _wshare(answers.confirmed, stable, w),
        "first_detected": _wshare(first_on_time, dist, w),
        "first_open_on_stable": _wshare(answers.open_unconfirmed, stable, w),
        "not_monitored": _wshare(~answers.monitored, np.ones_like(dist), w),
    }
    m["omission"] = None if m["detected"] is None else round(1 - m["detected"], 4)
    flagged = answers.confirmed
    m["commission"] = (None if not w[flagged].sum() else
                       round(1 - float(w[flagged & detected].sum()) / float(w[flagged].sum()),
                             4))
    p = None if m["commission"] is None else 1 - m["commission"]
    r = m["detected"]
    m["f1"] = (None if p is None or r is None or p + r == 0 else round(2 * p * r / (p + r), 4))
    lag = (answers.confirmed_date - samples.date)[detected]
    flag = (answers.first_date - samples.date)[dist & first_on_time]
    m["median_lag"] = _wquantile(lag, w[detected], 0.5)
    m["p90_lag"] = _wquantile(lag, w[detected], 0.9)
    m["first_median_lag"] = _wquantile(flag, w[dist & first_on_time], 0.5)
    m["first_p90_lag"] = _wquantile(flag, w[dist & first_on_time], 0.9)
    kinds = sorted({k for k in samples.kind[dist] if k})
    for kind in kinds:
        m[f"detected_{kind}"] = _wshare(on_time, dist & (samples.kind == kind), w)
    per_type = [m[f"detected_{k}"] for k in kinds if m[f"detected_{k}"] is not None]
    m["type_mean"] = round(float(np.mean(per_type)), 4) if per_type else m["detected"]
    m["samples_disturbed"] = int(dist.sum())
    m["samples_stable"] = int(stable.sum())
    out = Scores(name=name, metrics=m)
    if samples.stratum is not None and samples.strata_area_ha:
        out.area = area_estimate(samples, answers)
    return out


def area_estimate(samples: ScoringSamples, answers: SampleAnswers) -> dict:
    """The area-adjusted estimate of disturbed area in the scored window (map class:
    a confirmed alert; reference class: disturbed), from the sample's strata."""
    from .estimate import stratified_estimate

    est = stratified_estimate(
        map_class=np.where(answers.confirmed, "disturbed", "stable"),
        reference_class=np.where(samples.disturbed, "disturbed", "stable"),
        stratum=samples.stratum, strata_size=samples.strata_area_ha)
    area, se, ci = est.area.get("disturbed", (float("nan"),) * 3)
    users = est.users.get("disturbed", (float("nan"), float("nan")))
    producers = est.producers.get("disturbed", (float("nan"), float("nan")))
    return {"disturbed_area_ha": round(float(area), 1), "disturbed_area_ci95_ha":
            round(float(ci), 1), "users_accuracy": round(float(users[0]), 4),
            "producers_accuracy": round(float(producers[0]), 4),
            "overall_accuracy": round(float(est.overall), 4)}


def rank(scores: list[Scores], *, by: str, max_false_alarm_share: float) -> list[Scores]:
    """Best first: candidates within the false-alarm limit by ``by`` (higher first; ties:
    shorter median first-detection lag), then the others by false alarms (fewer first)."""
    def key(s: Scores):
        fa = s.get("false_alarms")
        within = fa is not None and fa <= max_false_alarm_share
        value = s.get(by)
        lag = s.get("first_median_lag")
        return (0 if within else 1,
                -(value if value is not None else -1) if within else (fa or 0),
                lag if lag is not None else 1e9)
    return sorted(scores, key=key)


__all__ = ["SampleAnswers", "sample_answers", "Scores", "score", "rank", "area_estimate"]
