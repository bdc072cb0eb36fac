"""The alert ladder: per-pixel alert layers, kept in a tile's state and updated with every
monitored acquisition (:func:`observe`, called by :mod:`forestwatch.monitor.forward`).

nrt says nothing until a break is confirmed (for the default IQR: 3 consecutive anomalous
clear observations), and then dates it at the confirmation. Operational systems (OPERA
DIST-ALERT, GFW, FORDEAD) say "something is happening here" at the first anomalous
observation and grow their confidence with the evidence; so does this ladder.

Status codes (``alert_status``, uint8):

====  ====================  =========================================================
code  name                  meaning
====  ====================  =========================================================
0     no alert              monitored, no anomaly in the current episode
1     first detection       one anomalous observation
2     provisional           more than one, not (yet) confirmed by the monitor
3     confirmed             the monitor's break (nrt mask 3); its first-detection date
                            becomes the start of the uninterrupted run of anomalies
                            that led to it (an isolated anomaly before it, with a
                            normal observation between, was not the disturbance)
4     returned to normal    was anomalous, then ``recovery_observations`` consecutive
                            normal observations: a false start (counted in
                            ``false_starts``); a new anomaly starts a new episode at 1
255   no data               not monitored (not forest, unstable history, too few
                            observations to fit)
====  ====================  =========================================================

"Anomalous" is the monitor class's own test (:mod:`forestwatch.alerts.anomaly`); an
observation is one the monitor itself takes (clear, and not an extreme outlier it screens
out). A confirmed pixel stays confirmed: nrt stops monitoring it.

**Confidence** (0-100, uint8) of an alert episode::

    evidence   = sum over its anomalous observations of min(strength, 3)
    confidence = round(100 * evidence / (evidence + confidence_half))

``strength`` is the anomaly's size in units of its threshold (1.0 = just anomalous), so
one just-anomalous observation with the default ``confidence_half: 3`` gives 25, three
gives 50, three of twice the threshold 67, and it tends to 100 as evidence accumulates; a
single very strong observation counts as at most three weak ones. It is 0 for statuses
0, 4 and 255.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import numba
import numpy as np

NO_ALERT, FIRST, PROVISIONAL, CONFIRMED, RECOVERED, NO_DATA = 0, 1, 2, 3, 4, 255

#: status code -> (name, RGBA) for the status layer's palette and legend
STATUS_CLASSES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    NO_ALERT: ("no alert", (26, 150, 65, 255)),
    FIRST: ("first detection", (255, 230, 0, 255)),
    PROVISIONAL: ("provisional", (253, 141, 60, 255)),
    CONFIRMED: ("confirmed", (215, 25, 28, 255)),
    RECOVERED: ("returned to normal", (116, 169, 207, 255)),
}
#: the status of pixels that are not monitored; the status layer's nodata value
STATUS_NODATA = NO_DATA
#: statuses that are an open alert (what the polygons and area statistics count)
ALERT_STATUSES = (FIRST, PROVISIONAL, CONFIRMED)
#: cap on one observation's strength in the evidence sum
STRENGTH_CAP = 3.0
EPOCH = dt.date(1970, 1, 1)


@dataclass
class AlertParams:
    """The ``alerts`` config section's ladder settings."""

    #: EWMA/CuSum/MoSum: fraction of the break threshold the process must pass
    process_fraction: float = 0.5
    #: consecutive normal observations that end an unconfirmed alert (a false start)
    recovery_observations: int = 2
    #: evidence at which the confidence is 50
    confidence_half: float = 3.0

    @classmethod
    def from_config(cls, alerts_cfg: dict | None) -> AlertParams:
        """From the (validated) ``alerts`` section; keys it lacks keep their defaults."""
        default = cls()
        cfg = alerts_cfg or {}
        return cls(
            process_fraction=float(cfg.get("process_fraction", default.process_fraction)),
            recovery_observations=int(cfg.get("recovery_observations",
                                              default.recovery_observations)),
            confidence_half=float(cfg.get("confidence_half", default.confidence_half)))


@dataclass
class AlertLayers:
    """The alert layers of one tile, each a 2-D array on the tile's grid.

    Dates are int32 days since 1970-01-01, 0 = none. The episode fields describe the
    current alert episode (or, for status 4, the last one that returned to normal).
    """

    #: uint8 status code (module docstring)
    status: np.ndarray
    #: int32 date of the episode's first anomalous observation
    first_date: np.ndarray
    #: int32 date the monitor confirmed the break
    confirmed_date: np.ndarray
    #: int32 date of the latest observation the monitor took
    last_date: np.ndarray
    #: uint16 anomalous observations in the episode
    count: np.ndarray
    #: float32 largest loss in the episode, in index units (predicted minus observed)
    max_loss: np.ndarray
    #: float32 the episode's evidence (sum of capped strengths; confidence formula)
    evidence: np.ndarray
    #: uint8 consecutive normal observations since the episode's last anomaly
    normal_run: np.ndarray
    #: int32 date the episode's current uninterrupted run of anomalies began
    run_start: np.ndarray
    #: uint16 episodes that returned to normal, over the whole monitoring
    false_starts: np.ndarray

    DTYPES = {"status": np.uint8, "first_date": np.int32, "confirmed_date": np.int32,
              "last_date": np.int32, "count": np.uint16, "max_loss": np.float32,
              "evidence": np.float32, "normal_run": np.uint8, "run_start": np.int32,
              "false_starts": np.uint16}

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def start(cls, monitor_mask: np.ndarray) -> AlertLayers:
        """Layers before any monitoring: no alert where the monitor watches (nrt mask 1),
        no data elsewhere."""
        shape = np.shape(monitor_mask)
        layers = {n: np.zeros(shape, dtype=dt_) for n, dt_ in cls.DTYPES.items()}
        layers["status"] = np.where(np.asarray(monitor_mask) == 1, NO_ALERT,
                                    NO_DATA).astype(np.uint8)
        return cls(**layers)

    @classmethod
    def from_monitor(cls, monitor_mask: np.ndarray, detection_date: np.ndarray | None
                     ) -> AlertLayers:
        """Layers rebuilt from nrt's own arrays alone, for states written before the ladder
        (format version 2): confirmed breaks are confirmed, dated at their confirmation
        (also as first detection, the earlier anomalies being unknown); everything else
        starts with no alert."""
        mask = np.asarray(monitor_mask)
        layers = cls.start(np.where(mask == 3, 1, mask))
        brk = mask == 3
        layers.status[brk] = CONFIRMED
        if detection_date is not None:
            dates = np.asarray(detection_date).astype(np.int32)
            layers.confirmed_date[brk] = dates[brk]
            layers.first_date[brk] = dates[brk]
            layers.run_start[brk] = dates[brk]
        layers.count[brk] = 1
        return layers

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> AlertLayers:
        """From stored arrays; ``run_start`` (added within format 3) defaults to the
        episode's first date."""
        arrays = dict(arrays)
        if "run_start" not in arrays and "first_date" in arrays:
            arrays["run_start"] = arrays["first_date"]
        missing = [n for n in cls.DTYPES if n not in arrays]
        if missing:
            raise KeyError(f"alert layers missing: {', '.join(missing)}; the state file is "
                           "incomplete: refit the tile (delete its state files and rerun)")
        return cls(**{n: np.ascontiguousarray(arrays[n], dtype=d)
                      for n, d in cls.DTYPES.items()})

    def arrays(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in self.DTYPES}

    def confidence(self, *, confidence_half: float = 3.0) -> np.ndarray:
        """uint8 confidence 0-100 of the open alerts (module docstring), 0 elsewhere."""
        ev = self.evidence.astype(np.float64)
        conf = np.rint(100.0 * ev / (ev + confidence_half))
        conf[~np.isin(self.status, ALERT_STATUSES)] = 0
        return conf.astype(np.uint8)


@numba.njit(nogil=True, cache=True)
def _observe(status, first_date, confirmed_date, last_date, count, max_loss, evidence,
             normal_run, run_start, false_starts, observed, strength, residuals, confirmed,
             days, recovery, cap):  # pragma: no cover (numba)
    """:func:`observe` on 2-D arrays, one pixel after the other, in one pass."""
    for i in range(status.shape[0]):
        for j in range(status.shape[1]):
            s = status[i, j]
            seen = observed[i, j]
            open_or_none = s == NO_ALERT or s == FIRST or s == PROVISIONAL or s == RECOVERED
            anomalous = seen and open_or_none and strength[i, j] >= 1.0  # NaN: False
            normal = seen and open_or_none and not anomalous
            # what the pixel lost, float32, NaN kept: numpy's maximum(-residual, 0)
            loss = -np.float32(residuals[i, j])
            if loss < 0:
                loss = np.float32(0.0)
            if anomalous:
                if s == NO_ALERT or s == RECOVERED:  # a new episode
                    first_date[i, j] = days
                    count[i, j] = 0
                    max_loss[i, j] = 0
                    evidence[i, j] = 0
                    s = FIRST
                    run_start[i, j] = days
                elif normal_run[i, j] > 0:  # a new run of anomalies in the episode
                    run_start[i, j] = days
                count[i, j] = min(np.int64(count[i, j]) + 1, 65535)
                if not (max_loss[i, j] >= loss or np.isnan(max_loss[i, j])):
                    max_loss[i, j] = loss
                evidence[i, j] += min(strength[i, j], cap)
                normal_run[i, j] = 0
                if count[i, j] >= 2:
                    s = PROVISIONAL
            elif normal and (s == FIRST or s == PROVISIONAL):  # back to normal...
                normal_run[i, j] = min(np.int64(normal_run[i, j]) + 1, 255)
                if normal_run[i, j] >= recovery:  # ...ends an unconfirmed episode
                    s = RECOVERED
                    false_starts[i, j] += 1
            if confirmed[i, j] and s != CONFIRMED:  # the monitor's confirmation
                if s == FIRST or s == PROVISIONAL:
                    if anomalous and run_start[i, j] > first_date[i, j]:
                        first_date[i, j] = run_start[i, j]
                else:  # no anomaly of ours before it: starts and confirms its episode
                    first_date[i, j] = days
                    run_start[i, j] = days
                    count[i, j] = 1
                    max_loss[i, j] = loss
                    evidence[i, j] = 1.0
                s = CONFIRMED
                confirmed_date[i, j] = days
            if seen:
                last_date[i, j] = days
            status[i, j] = s


def _grid(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as a 2-D view (a 1-D array as one row), so that writes reach it."""
    if array.ndim == 2:
        return array
    if array.ndim == 1:
        return array[None, :]
    raise ValueError(f"alert layer {name} has {array.ndim} dimensions; the ladder takes "
                     "1-D or 2-D arrays")


def observe(layers: AlertLayers, *, observed: np.ndarray, strength: np.ndarray,
            residuals: np.ndarray, confirmed: np.ndarray, day: dt.date,
            params: AlertParams) -> None:
    """Take one observation into the ladder, in place.

    ``observed``: bool, pixels the monitor took this observation for (it monitored them
    and the value was clear and not screened out); ``strength``: float32 anomaly strength
    (:func:`forestwatch.alerts.anomaly.anomaly_strength`); ``residuals``: observed minus
    predicted index; ``confirmed``: bool, pixels whose break the monitor confirmed with
    this observation. All have the layers' shape.

    Each pixel, in order: an anomalous observation of a pixel with no alert or returned to
    normal starts an episode (status 1, its first date and run start today, its count,
    largest loss and evidence from zero); any anomalous observation of an open episode
    counts, keeps the largest loss (``-residual``), adds its strength capped at
    :data:`STRENGTH_CAP` to the evidence, starts a new run of anomalies after a normal
    observation, and makes the episode provisional from its second; a normal observation
    of an unconfirmed episode counts towards ``recovery_observations`` (status 4, a false
    start). The monitor's confirmation makes it confirmed, dated from the run of anomalies
    that led to it, or starts and confirms an episode on the day when there was none.

    One compiled pass over the pixels (:func:`_observe`): the same numbers as the
    array-wide steps it replaced (tested against them); a day on 1000 x 1000 px 40 ->
    4 ms (BENCHMARKS.md, "The alert ladder in one compiled pass").
    """
    days = np.int32((day - EPOCH).days)
    arrays = {name: _grid(getattr(layers, name), name) for name in layers.DTYPES}
    shape = arrays["status"].shape
    inputs = {}
    for name, value, dtype in (("observed", observed, np.bool_),
                               ("strength", strength, None),
                               ("residuals", residuals, None),
                               ("confirmed", confirmed, np.bool_)):
        value = np.asarray(value, dtype=dtype)
        if value.size != arrays["status"].size:
            raise ValueError(f"{name} has {value.size} pixels; the alert layers have "
                             f"{arrays['status'].size}")
        inputs[name] = value.reshape(shape)
    _observe(arrays["status"], arrays["first_date"], arrays["confirmed_date"],
             arrays["last_date"], arrays["count"], arrays["max_loss"], arrays["evidence"],
             arrays["normal_run"], arrays["run_start"], arrays["false_starts"],
             inputs["observed"], inputs["strength"], inputs["residuals"],
             inputs["confirmed"], days, np.int64(params.recovery_observations),
             np.float32(STRENGTH_CAP))


__all__ = ["AlertLayers", "AlertParams", "observe", "STATUS_CLASSES", "STATUS_NODATA",
           "ALERT_STATUSES", "NO_ALERT", "FIRST", "PROVISIONAL", "CONFIRMED", "RECOVERED",
           "NO_DATA"]
