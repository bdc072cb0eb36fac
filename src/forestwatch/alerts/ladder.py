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
        missing = [n for n in cls.DTYPES if n not in arrays]
        if missing:
            raise KeyError(f"alert layers missing: {', '.join(missing)}")
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


def _lut(codes) -> np.ndarray:
    """Boolean lookup table over uint8 status codes (``LUT[status]`` is much faster than
    ``np.isin`` on a tile)."""
    table = np.zeros(256, dtype=bool)
    table[list(codes)] = True
    return table


_LUT_OPEN_OR_NONE = _lut((NO_ALERT, FIRST, PROVISIONAL, RECOVERED))
_LUT_NEW = _lut((NO_ALERT, RECOVERED))
_LUT_UNCONFIRMED = _lut((FIRST, PROVISIONAL))


def observe(layers: AlertLayers, *, observed: np.ndarray, strength: np.ndarray,
            residuals: np.ndarray, confirmed: np.ndarray, day: dt.date,
            params: AlertParams) -> None:
    """Take one observation into the ladder, in place.

    ``observed``: bool, pixels the monitor took this observation for (it monitored them
    and the value was clear and not screened out); ``strength``: float32 anomaly strength
    (:func:`forestwatch.alerts.anomaly.anomaly_strength`); ``residuals``: observed minus
    predicted index; ``confirmed``: bool, pixels whose break the monitor confirmed with
    this observation.
    """
    days = np.int32((day - EPOCH).days)
    st = layers.status
    open_or_none = _LUT_OPEN_OR_NONE[st]
    with np.errstate(invalid="ignore"):
        anomalous = observed & open_or_none & (strength >= 1.0)  # NaN compares False
    normal = observed & open_or_none & ~anomalous

    # a new episode
    new = anomalous & _LUT_NEW[st]
    layers.first_date[new] = days
    for name in ("count", "max_loss", "evidence"):
        getattr(layers, name)[new] = 0
    st[new] = FIRST
    # evidence of this one
    layers.count[anomalous] = np.minimum(layers.count[anomalous].astype(np.int64) + 1,
                                         np.iinfo(np.uint16).max).astype(np.uint16)
    loss = np.maximum(-np.asarray(residuals, dtype=np.float32), 0)
    layers.max_loss[anomalous] = np.maximum(layers.max_loss[anomalous], loss[anomalous])
    layers.evidence[anomalous] += np.minimum(strength[anomalous], STRENGTH_CAP)
    layers.run_start[new | (anomalous & (layers.normal_run > 0))] = days
    layers.normal_run[anomalous] = 0
    st[anomalous & (layers.count >= 2)] = PROVISIONAL

    # back to normal ends an unconfirmed episode
    waiting = normal & _LUT_UNCONFIRMED[st]
    layers.normal_run[waiting] = np.minimum(layers.normal_run[waiting].astype(np.int64) + 1,
                                            255).astype(np.uint8)
    back = waiting & (layers.normal_run >= params.recovery_observations)
    st[back] = RECOVERED
    layers.false_starts[back] += 1

    # the monitor's confirmation (also of a break in the other direction, with no anomaly
    # of ours before it: it then starts and confirms its episode on the same day)
    conf = confirmed & (st != CONFIRMED)
    # a confirmed disturbance began with the run of anomalies the monitor confirmed: an
    # isolated anomaly before it, with a normal observation between, is not part of it
    rerun = conf & anomalous & _LUT_UNCONFIRMED[st] & (layers.run_start > layers.first_date)
    layers.first_date[rerun] = layers.run_start[rerun]
    unstarted = conf & ~_LUT_UNCONFIRMED[st]
    layers.first_date[unstarted] = days
    layers.run_start[unstarted] = days
    layers.count[unstarted] = 1
    layers.max_loss[unstarted] = loss[unstarted]
    layers.evidence[unstarted] = 1.0
    st[conf] = CONFIRMED
    layers.confirmed_date[conf] = days
    layers.last_date[observed] = days


__all__ = ["AlertLayers", "AlertParams", "observe", "STATUS_CLASSES", "STATUS_NODATA",
           "ALERT_STATUSES", "NO_ALERT", "FIRST", "PROVISIONAL", "CONFIRMED", "RECOVERED",
           "NO_DATA"]
