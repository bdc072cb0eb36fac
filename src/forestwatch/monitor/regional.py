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

With ``by_seasonality``, each pixel is compared with the forest of its own seasonality
only: an early leaf fall lowers the broadleaved stands of a window and not the conifers
between them, so in mixed forest its share of *all* the window's forest can stay under
``max_share`` while it is most of the broadleaved forest. The monitored pixels are split
in two by the fitted model's seasonal amplitude (the range of its prediction over a
year; Otsu's threshold over the tile's forest, so no threshold is tied to an index), and
the share is taken within the pixel's half of the window.

The screen needs an anomaly test that does not depend on the monitor's state after the
observation: IQR (the residual below the lower band) and CCDC (the residual below
``-sensitivity * rmse``); EWMA, CuSum and MoSum are not screened (config check).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from ..alerts.ladder import FIRST, PROVISIONAL, AlertLayers
from .regressors import predict, regressors

#: monitor classes whose anomaly test the screen can use before the observation is taken
SCREENED_CLASSES = ("IQR", "CCDC")
#: observed share of a window below which no pixel of it is screened (too few to judge)
MIN_OBSERVED_SHARE = 0.05
#: dates over one year at which the fitted model is evaluated for its seasonal amplitude
_AMPLITUDE_DATES = [dt.datetime(2001, month, 15) for month in range(1, 13)]
#: at most this many values make the histogram of Otsu's threshold (a strided sample)
_OTSU_SAMPLE = 65_536
#: fewer monitored pixels than this: one stratum (Otsu's split needs a distribution)
MIN_STRATIFIED_PIXELS = 100


@dataclass(frozen=True)
class RegionalScreen:
    """The ``monitor.regional_screening`` settings, with the window in pixels."""

    #: odd window side in pixels (``window_m`` / grid resolution)
    window_px: int
    #: share of the window's observed forest that must be anomalous to screen (0..1)
    max_share: float
    #: an anomaly run older than this (days) is not screened any more
    hold_days: int
    #: compare each pixel with the window's forest of its own seasonality only
    by_seasonality: bool = False
    #: the last monitor's strata, ``[(monitor, labels)]``: a screen serves one monitor
    #: (one per member and run, or per candidate and tile)
    _strata: list = field(default_factory=list, compare=False, repr=False)

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
                   hold_days=int(rs["hold_days"]),
                   by_seasonality=bool(rs.get("by_seasonality", False)))

    def strata_of(self, monitor) -> np.ndarray | None:
        """The seasonality stratum (uint8 0 = weakly, 1 = strongly seasonal, the tile's
        shape) of every pixel of a fitted nrt ``monitor``, computed once per monitor;
        None without ``by_seasonality``."""
        if not self.by_seasonality:
            return None
        if not self._strata or self._strata[0][0] is not monitor:
            self._strata[:] = [(monitor, seasonality_strata(monitor))]
        return self._strata[0][1]

    def regional(self, *, observed: np.ndarray, anomalous: np.ndarray,
                 alerts: AlertLayers, today: int, strata: np.ndarray | None = None
                 ) -> np.ndarray:
        """Pixels (bool, the tile's shape) whose anomaly today is regional: anomalous,
        in a window where more than ``max_share`` of the observed pixels are anomalous,
        and in an anomaly run that began at most ``hold_days`` ago (the ``alerts``
        layers before today's observation; ``today``: days since 1970). A run goes on
        while the pixel's open alert has had no normal observation since its last
        anomaly; otherwise today's anomaly starts one. With ``strata`` (labels, the
        tile's shape, 0 and 1; :meth:`strata_of`) the share is taken among the window's
        pixels of the pixel's own stratum."""
        if not anomalous.any():
            return np.zeros(anomalous.shape, dtype=bool)
        share = self._share(observed, anomalous, strata)
        status = alerts.status
        running = (((status == FIRST) | (status == PROVISIONAL)) & (alerts.normal_run == 0)
                   & (alerts.run_start > 0))
        started = np.where(running, alerts.run_start, today)
        return anomalous & (share > self.max_share) & (today - started <= self.hold_days)

    def _share(self, observed: np.ndarray, anomalous: np.ndarray,
               strata: np.ndarray | None) -> np.ndarray:
        """Share (float32) of the window's observed pixels (of the pixel's stratum, with
        ``strata``) that are anomalous; 0 where fewer than :data:`MIN_OBSERVED_SHARE` of
        the window is observed. ``scipy.ndimage.uniform_filter``'s window means, bit for
        bit, in one compiled pass for both strata (:mod:`._window`: 6 ms against scipy's
        ~20 ms for the two strata of 1000 x 1000 px, its filters on two threads)."""
        from ._window import window_share

        if (observed.ndim != 2 or observed.shape != anomalous.shape
                or observed.dtype != bool or anomalous.dtype != bool):
            raise ValueError(f"the regional screen takes a tile's 2-D bool masks, not "
                             f"{observed.dtype} {observed.shape} and {anomalous.dtype} "
                             f"{anomalous.shape}")
        share = np.empty(observed.shape, dtype=np.float32)
        # without strata the kernel reads none: any uint8 array of the shape will do
        labels = anomalous.view(np.uint8) if strata is None else strata
        window_share(np.ascontiguousarray(observed), np.ascontiguousarray(anomalous),
                     np.ascontiguousarray(labels, dtype=np.uint8), strata is not None,
                     self.window_px, np.float32(MIN_OBSERVED_SHARE), share)
        return share


def seasonal_amplitude(monitor) -> np.ndarray:
    """Range (float32, index units, the monitor's shape) of a fitted nrt monitor's
    prediction over one year, from its prediction on the 15th of every month.

    nrt's ``predict(date)`` is its regressors of the date times ``beta``; for a monitor
    with both, the dates' regressors (built once, :func:`_amplitude_regressors`) are
    multiplied with each pixel's ``beta`` in one compiled pass
    (:func:`forestwatch.monitor._amplitude.prediction_range`;
    ~0.25 s for a pass per date, 0.02 s for numpy's matrix products, 0.005 s compiled,
    on 1000 x 1000 px; in float32, within rounding of nrt's);
    otherwise ``predict`` is called for each date. A pixel without a fit (NaN ``beta``)
    gets ``-inf``."""
    beta = getattr(monitor, "beta", None)
    X = _amplitude_regressors(monitor)
    if isinstance(beta, np.ndarray) and beta.ndim == 3 and X is not None:
        from ._amplitude import prediction_range

        flat = np.ascontiguousarray(beta.reshape(beta.shape[0], -1))
        out = np.empty(flat.shape[1], dtype=np.float32)
        prediction_range(np.ascontiguousarray(X, dtype=np.float64), flat, out)
        return out.reshape(beta.shape[1:])
    low = high = None
    for date in _AMPLITUDE_DATES:
        value = np.asarray(predict(monitor, date), dtype=np.float32)
        low = value if low is None else np.fmin(low, value)
        high = value if high is None else np.fmax(high, value)
    return high - low


def _amplitude_regressors(monitor) -> np.ndarray | None:
    """nrt's regressors of the 12 amplitude dates, (12, n_regressors), in one call of
    :func:`.regressors.regressors` with the monitor's ``trend`` and ``harmonic_order``
    (nrt's values, without its pandas calls); None for a
    monitor without them or whose regressors do not match its ``beta``."""
    trend, order = getattr(monitor, "trend", None), getattr(monitor, "harmonic_order", None)
    beta = getattr(monitor, "beta", None)
    if trend is None or order is None or not isinstance(beta, np.ndarray):
        return None
    X = regressors(_AMPLITUDE_DATES, trend=trend, harmonic_order=order)
    return X if X.ndim == 2 and X.shape == (len(_AMPLITUDE_DATES), beta.shape[0]) else None


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold of ``values`` (1-D, finite): the split of their histogram into two
    classes with the largest between-class variance."""
    lo, hi = np.percentile(values, (0.5, 99.5))
    if not hi > lo:
        return float(hi)
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    # each split between two bins: pixels and first moments below it, and in all
    weight = np.cumsum(counts)[:-1].astype(np.float64)
    moments = np.cumsum(counts * centres)
    moment, total, total_moment = moments[:-1], counts.sum(), moments[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_low = moment / weight
        mean_high = (total_moment - moment) / (total - weight)
        between = weight * (total - weight) * (mean_low - mean_high) ** 2
    return float(edges[1:-1][int(np.nanargmax(between))])


def seasonality_strata(monitor) -> np.ndarray:
    """uint8 labels (the monitor's shape): 1 where the fitted seasonal amplitude of a
    fitted pixel is above Otsu's threshold over the fitted pixels, 0 elsewhere; all 0
    with fewer than :data:`MIN_STRATIFIED_PIXELS`. Fitted: nrt's mask 1 (monitored),
    2 (unstable history) or 3 (break), i.e. the same pixels from the fit on, so that a
    tile monitored day by day gets the same strata as one fast-forwarded in one go."""
    amplitude = seasonal_amplitude(monitor)
    mask = np.asarray(monitor.mask)
    # two comparisons: np.isin(mask, (1, 2, 3)) took 2 ms of the strata's 10 on 1000 x 1000 px
    monitored = (mask >= 1) & (mask <= 3) & np.isfinite(amplitude)
    values = amplitude[monitored]
    if values.size < MIN_STRATIFIED_PIXELS:
        return np.zeros(amplitude.shape, dtype=np.uint8)
    step = max(1, values.size // _OTSU_SAMPLE)
    upper = np.greater(amplitude, otsu_threshold(values[::step]), out=monitored,
                       where=monitored)
    return upper.view(np.uint8)


__all__ = ["RegionalScreen", "SCREENED_CLASSES", "seasonal_amplitude", "seasonality_strata",
           "otsu_threshold"]
