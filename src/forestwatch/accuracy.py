"""Accuracy of the detections against the synthetic archive's known truth.

Pixel-based, on the processing grid. Pixels within one pixel of a truth edge
(forest/non-forest or disturbed/undisturbed) are left out: warping 10/20 m UTM data onto
the grid mixes them, so neither answer is wrong there.

* detected share: disturbed forest pixels (disturbed after the history ends and at least
  ``min_lead_days`` before the end of monitoring) flagged as a confirmed break on or after
  the true date; also per disturbance type (``detected_share_<type>``, TYPES): clear-cut
  and partial dieback always, the others when the truth has them;
* false-alarm share: undisturbed forest pixels flagged as a confirmed break;
* lag: days from the true disturbance date to the detection date (median, p90);
* with the alert layers (``status_vrt``, ``first_vrt``), the same for **first
  detections** (an open alert of any status, 1-3, dated at its first anomalous
  observation; key ``first_detection``), the share of undisturbed forest with an open
  unconfirmed alert (status 1-2) at the end, and the **false-start** shares: of the
  pixels that had an alert episode (status 1-4), those whose last episode returned to
  normal (status 4), overall and on undisturbed forest;
* forest mask: producer's and user's accuracy of the mask the workflow derived.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import from_bounds
from scipy import ndimage

EPOCH = dt.date(1970, 1, 1)
#: disturbance_type.tif code -> (key suffix, label); other codes get ``type_<code>``
TYPES = {1: ("clear_cut", "clear-cuts"), 2: ("partial", "partial dieback"),
         3: ("thinning", "thinning"), 4: ("storm", "storm damage")}


def _days(value: str) -> int:
    return (dt.date.fromisoformat(str(value)) - EPOCH).days


def _read_on(path: Path, bounds, shape) -> np.ndarray:
    with rasterio.open(path) as src:
        window = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        return src.read(1, window=window, boundless=True, fill_value=0, out_shape=shape)


def assess(mask_vrt: str | Path, date_vrt: str | Path, truth_dir: str | Path,
           monitor_start: str, monitor_end: str, min_lead_days: int = 30, *,
           status_vrt: str | Path | None = None, first_vrt: str | Path | None = None
           ) -> dict:
    """Compare the mosaic with the truth; return a dict of metrics (shares in 0..1)."""
    truth_dir = Path(truth_dir)
    with rasterio.open(mask_vrt) as src:
        mask = src.read(1)
        bounds, shape = src.bounds, src.shape
    dates = _read_on(Path(date_vrt), bounds, shape).astype(np.int64)
    forest = _read_on(truth_dir / "forest.tif", bounds, shape) == 1
    t_day = _read_on(truth_dir / "disturbance_date.tif", bounds, shape).astype(np.int64)
    t_type = _read_on(truth_dir / "disturbance_type.tif", bounds, shape)

    disturbed_any = t_day > 0
    edge = np.zeros(shape, dtype=bool)
    for layer in (forest, disturbed_any):
        edge |= ndimage.binary_dilation(layer) & ~ndimage.binary_erosion(layer)
    core = ~edge
    start, end = _days(monitor_start), _days(monitor_end)
    in_window = (t_day > start) & (t_day <= end - min_lead_days)
    disturbed = forest & in_window & core
    stable = forest & ~disturbed_any & core
    brk = mask == 3
    detected = disturbed & brk & (dates >= t_day)
    early = disturbed & brk & (dates < t_day)
    lag = (dates - t_day)[detected]

    def share(num: np.ndarray, den: np.ndarray) -> float | None:
        n = int(den.sum())
        return round(float(num.sum()) / n, 4) if n else None

    monitored = np.isin(mask, (1, 2, 3, 4))
    out = {
        "monitoring_period": [str(monitor_start), str(monitor_end)],
        "disturbed_forest_pixels": int(disturbed.sum()),
        "undisturbed_forest_pixels": int(stable.sum()),
        "detected_share": share(detected, disturbed),
        **{f"detected_share_{TYPES.get(code, (f'type_{code}',))[0]}":
           share(detected & (t_type == code), disturbed & (t_type == code))
           for code in sorted({1, 2} | set(np.unique(t_type[t_type > 0]).tolist()))},
        "detected_before_true_date_share": share(early, disturbed),
        "false_alarm_share": share(stable & brk, stable),
        "median_lag_days": round(float(np.median(lag)), 1) if lag.size else None,
        "p90_lag_days": round(float(np.percentile(lag, 90)), 1) if lag.size else None,
        "forest_mask_producers_accuracy": share(forest & monitored & core, forest & core),
        "forest_mask_users_accuracy": share(forest & monitored & core, monitored & core),
    }
    if status_vrt is not None and first_vrt is not None:
        status = _read_on(Path(status_vrt), bounds, shape)
        first = _read_on(Path(first_vrt), bounds, shape).astype(np.int64)
        alert = np.isin(status, (1, 2, 3))
        f_detected = disturbed & alert & (first >= t_day)
        f_lag = (first - t_day)[f_detected]
        episode = np.isin(status, (1, 2, 3, 4))
        out["first_detection"] = {
            "detected_share": share(f_detected, disturbed),
            "detected_before_true_date_share": share(disturbed & alert & (first < t_day),
                                                     disturbed),
            "median_lag_days": round(float(np.median(f_lag)), 1) if f_lag.size else None,
            "p90_lag_days": round(float(np.percentile(f_lag, 90)), 1) if f_lag.size else None,
            "open_unconfirmed_on_undisturbed_share": share(stable & np.isin(status, (1, 2)),
                                                           stable),
            "false_start_share": share(forest & core & (status == 4), forest & core & episode),
            "false_start_on_undisturbed_share": share(stable & (status == 4), stable),
        }
    return out


def to_markdown(metrics: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f} %"

    def num(v):
        return "n/a" if v is None else v

    rows = [
        ("Confirmed alerts: detected share of disturbed forest",
         pct(metrics["detected_share"])),
        *((f"  {label}", pct(metrics[f"detected_share_{key}"]))
          for key, label in TYPES.values() if f"detected_share_{key}" in metrics),
        ("Confirmed alerts: false-alarm share of undisturbed forest",
         pct(metrics["false_alarm_share"])),
        ("Confirmed alerts: median lag (days)", num(metrics["median_lag_days"])),
        ("Confirmed alerts: 90th percentile lag (days)", num(metrics["p90_lag_days"])),
        ("Forest mask producer's accuracy", pct(metrics["forest_mask_producers_accuracy"])),
        ("Forest mask user's accuracy", pct(metrics["forest_mask_users_accuracy"])),
        ("Disturbed / undisturbed forest pixels assessed",
         f"{metrics['disturbed_forest_pixels']} / {metrics['undisturbed_forest_pixels']}"),
    ]
    first = metrics.get("first_detection")
    if first:
        after = next(i for i, (k, _) in enumerate(rows) if "90th percentile" in k) + 1
        rows[after:after] = [
            ("First detections: detected share", pct(first["detected_share"])),
            ("First detections: median lag (days)", num(first["median_lag_days"])),
            ("First detections: 90th percentile lag (days)", num(first["p90_lag_days"])),
            ("Undisturbed forest with an open unconfirmed alert",
             pct(first["open_unconfirmed_on_undisturbed_share"])),
            ("Alert episodes that returned to normal (false starts)",
             pct(first["false_start_share"])),
        ]
    lines = ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    period = " to ".join(metrics["monitoring_period"])
    return f"Detections against the synthetic truth, monitoring {period}:\n\n" + "\n".join(lines) + "\n"
