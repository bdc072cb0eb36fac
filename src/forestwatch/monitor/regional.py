"""Regional anomaly screening: anomalies shared by much of the surrounding forest on one
date are not counted towards a break.

An early leaf fall in a drought year, unflagged haze or thin cirrus, snow: all lower the
index of most forest pixels of an area at once, and a monitor that sees each pixel alone
confirms them as breaks once they last ``boundary`` observations. A disturbance is local:
a clear-cut, a thinned stand, a storm patch is a small part of the forest around it. So
on each date, for each anomalous pixel, the share of the observed forest pixels within a
square window of ``window_m`` metres that are anomalous is computed; where it exceeds
``max_share``, the observation is withheld from nrt (as if not observed: it neither
counts towards a break nor resets nrt's count). The alert ladder still takes it, so a
first detection still shows at once.

A disturbance larger than ``max_share`` of a window (about 120 ha in a 2 km window at
30 %) would then never be confirmed; so the screen holds an anomaly back for at most
``hold_days`` after its uninterrupted run of anomalies began (the ladder's ``run_start``):
an early leaf fall is over by then (the model's own leaf fall catches up), a large clear-
cut or storm area is confirmed about ``hold_days`` later than it would be without the
screen.

The screen needs an anomaly test that does not depend on the monitor's state after the
observation: IQR (the residual below the lower band) and CCDC (the residual below
``-sensitivity * rmse``); EWMA, CuSum and MoSum are not screened (config check).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..alerts.ladder import FIRST, PROVISIONAL, AlertLayers

#: monitor classes whose anomaly test the screen can use before the observation is taken
SCREENED_CLASSES = ("IQR", "CCDC")
#: observed share of a window below which no pixel of it is screened (too few to judge)
MIN_OBSERVED_SHARE = 0.05


@dataclass(frozen=True)
class RegionalScreen:
    """The ``monitor.regional_screening`` settings, with the window in pixels."""

    #: odd window side in pixels (``window_m`` / grid resolution)
    window_px: int
    #: share of the window's observed forest that must be anomalous to screen (0..1)
    max_share: float
    #: an anomaly run older than this (days) is not screened any more
    hold_days: int

    @classmethod
    def from_config(cls, cfg: dict) -> RegionalScreen | None:
        """From a config with ``monitor.regional_screening`` and ``grid.resolution``;
        None when the screen is off (``window_m: null``) or the monitor class has no
        pre-observation anomaly test."""
        rs = cfg["monitor"]["regional_screening"]
        if rs["window_m"] is None or cfg["monitor"]["class"] not in SCREENED_CLASSES:
            return None
        px = max(3, int(round(rs["window_m"] / cfg["grid"]["resolution"])))
        return cls(window_px=px + (1 - px % 2), max_share=float(rs["max_share"]),
                   hold_days=int(rs["hold_days"]))

    def regional(self, *, observed: np.ndarray, anomalous: np.ndarray,
                 alerts: AlertLayers, today: int) -> np.ndarray:
        """Pixels (bool, the tile's shape) whose anomaly today is regional: anomalous,
        in a window where more than ``max_share`` of the observed pixels are anomalous,
        and in an anomaly run that began at most ``hold_days`` ago (the ``alerts``
        layers before today's observation; ``today``: days since 1970). A run goes on
        while the pixel's open alert has had no normal observation since its last
        anomaly; otherwise today's anomaly starts one."""
        if not anomalous.any():
            return np.zeros(anomalous.shape, dtype=bool)
        size = self.window_px
        seen = ndimage.uniform_filter(observed.astype(np.float32), size, mode="constant")
        hit = ndimage.uniform_filter(anomalous.astype(np.float32), size, mode="constant")
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(seen >= MIN_OBSERVED_SHARE, hit / seen, 0.0)
        running = (np.isin(alerts.status, (FIRST, PROVISIONAL)) & (alerts.normal_run == 0)
                   & (alerts.run_start > 0))
        started = np.where(running, alerts.run_start, today)
        return anomalous & (share > self.max_share) & (today - started <= self.hold_days)


__all__ = ["RegionalScreen", "SCREENED_CLASSES"]
