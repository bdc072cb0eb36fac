"""Accuracy assessment against a known truth (forestwatch.accuracy).

A hand-made 40 x 40 px truth on a 20 m EPSG:3035 grid, and detections written the way
the workflow writes them (four 20 x 20 tiles with write_tile_reports, mosaicked with
build_vrt). Every expected number is counted by hand from the geometry below.

Geometry (rows, cols; inclusive ranges)::

    forest          2..37 x 2..37   (36 x 36)
    A  clear-cut    6..12 x 6..12   (7 x 7)  2023-03-01
    B  partial     16..22 x 16..22  (7 x 7)  2023-06-01 (straddles all four tiles)
    C  clear-cut    6..10 x 26..30  (5 x 5)  monitor_end - 30 days (last date assessed)
    L  clear-cut   28..32 x 6..10   (5 x 5)  monitor_end - 29 days (too late: not assessed)
    P  clear-cut   28..32 x 26..30  (5 x 5)  2022-11-01 (before monitoring: not assessed)

accuracy.assess drops one-pixel edges: a pixel is an edge when it is in the 4-neighbour
dilation of a layer but not in its erosion (forest and "disturbed at any date").

* forest core = forest minus its outermost ring = 34 x 34 = 1156 px;
* an n x n patch keeps its inner (n-2) x (n-2) px: A 25, B 25, C 9 -> 59 disturbed px
  (clear-cut 34, partial 25);
* undisturbed core forest = 1156 minus, for every patch, the patch and its 4-neighbour
  outer ring (n*n + 4n px: 77 for 7 x 7, 45 for 5 x 5; the rings do not overlap and lie
  inside the forest core) = 1156 - 2*77 - 3*45 = 867 px;
* forest off every edge (forest-mask accuracies) = 867 + inner parts of all five patches
  (25 + 25 + 9 + 9 + 9) = 944 px.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from forestwatch.accuracy import assess, to_markdown
from forestwatch.reports import build_vrt, write_tile_reports

N = 40
RES = 20.0
CRS = "EPSG:3035"
TRANSFORM = Affine(RES, 0, 4_400_000.0, 0, -RES, 3_000_000.0)
MONITOR_START, MONITOR_END = "2023-01-01", "2023-12-31"


def day(iso: str) -> int:
    return (dt.date.fromisoformat(iso) - dt.date(1970, 1, 1)).days


END = day(MONITOR_END)
FOREST = (slice(2, 38), slice(2, 38))
# name: (rows, cols, type, date)
PATCHES = {
    "A": (slice(6, 13), slice(6, 13), 1, day("2023-03-01")),
    "B": (slice(16, 23), slice(16, 23), 2, day("2023-06-01")),
    "C": (slice(6, 11), slice(26, 31), 1, END - 30),
    "L": (slice(28, 33), slice(6, 11), 1, END - 29),
    "P": (slice(28, 33), slice(26, 31), 1, day("2022-11-01")),
}
DISTURBED = 25 + 25 + 9
CLEAR_CUT, PARTIAL = 25 + 9, 25
CORE_FOREST = 34 * 34
UNDISTURBED = CORE_FOREST - 2 * (49 + 28) - 3 * (25 + 20)
assert (DISTURBED, UNDISTURBED) == (59, 867)


def _write(path: Path, array: np.ndarray, dtype: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=N, width=N, count=1, dtype=dtype,
                       crs=CRS, transform=TRANSFORM, nodata=None) as dst:
        dst.write(array.astype(dtype), 1)


@pytest.fixture
def truth(tmp_path) -> Path:
    forest = np.zeros((N, N), np.uint8)
    forest[FOREST] = 1
    date = np.zeros((N, N), np.int32)
    kind = np.zeros((N, N), np.uint8)
    for rows, cols, t, d in PATCHES.values():
        date[rows, cols] = d
        kind[rows, cols] = t
    folder = tmp_path / "truth"
    _write(folder / "forest.tif", forest, "uint8")
    _write(folder / "disturbance_date.tif", date, "int32")
    _write(folder / "disturbance_type.tif", kind, "uint8")
    return folder


def _detections(detect: dict[str, int | None]) -> tuple[np.ndarray, np.ndarray]:
    """Mask 1 on forest, 0 elsewhere; patches in ``detect`` get mask 3 and the truth date
    plus the given lag (days; None = not detected)."""
    mask = np.zeros((N, N), np.uint8)
    mask[FOREST] = 1
    dates = np.zeros((N, N), np.int64)
    for name, lag in detect.items():
        if lag is None:
            continue
        rows, cols, _, d = PATCHES[name]
        mask[rows, cols] = 3
        dates[rows, cols] = d + lag
    return mask, dates


def _mosaic(root: Path, mask: np.ndarray, dates: np.ndarray) -> tuple[Path, Path]:
    """Write 2 x 2 tiles of 20 x 20 px and mosaic them, as the workflow does."""
    masks, date_files = [], []
    h = N // 2
    for r in (0, 1):
        for c in (0, 1):
            sl = (slice(r * h, (r + 1) * h), slice(c * h, (c + 1) * h))
            transform = TRANSFORM * Affine.translation(c * h, r * h)
            folder = root / "reports" / f"r{r}c{c}"
            write_tile_reports(mask[sl], dates[sl], CRS, transform, folder / "mask.tif",
                               folder / "detection_date.tif")
            masks.append(folder / "mask.tif")
            date_files.append(folder / "detection_date.tif")
    build_vrt(masks, root / "mosaic" / "mask.vrt")
    build_vrt(date_files, root / "mosaic" / "detection_date.vrt")
    return root / "mosaic" / "mask.vrt", root / "mosaic" / "detection_date.vrt"


def _assess(tmp_path, truth, mask, dates, **kwargs) -> dict:
    mask_vrt, date_vrt = _mosaic(tmp_path, mask, dates)
    return assess(mask_vrt, date_vrt, truth, MONITOR_START, MONITOR_END, **kwargs)


def test_perfect_detection(tmp_path, truth):
    mask, dates = _detections({"A": 10, "B": 10, "C": 10, "L": 10})
    m = _assess(tmp_path, truth, mask, dates)
    assert m["monitoring_period"] == [MONITOR_START, MONITOR_END]
    assert m["disturbed_forest_pixels"] == DISTURBED
    assert m["undisturbed_forest_pixels"] == UNDISTURBED
    assert m["detected_share"] == 1.0
    assert m["detected_share_clear_cut"] == 1.0
    assert m["detected_share_partial"] == 1.0
    assert m["detected_before_true_date_share"] == 0.0
    # L is flagged too, but it is disturbed (too late to assess), not a false alarm
    assert m["false_alarm_share"] == 0.0
    assert m["median_lag_days"] == 10.0
    assert m["p90_lag_days"] == 10.0
    assert m["forest_mask_producers_accuracy"] == 1.0
    assert m["forest_mask_users_accuracy"] == 1.0

    md = to_markdown(m)
    assert "2023-01-01 to 2023-12-31" in md
    assert "| Confirmed alerts: detected share of disturbed forest | 100.0 % |" in md
    assert "| Confirmed alerts: false-alarm share of undisturbed forest | 0.0 % |" in md
    assert f"| {DISTURBED} / {UNDISTURBED} |" in md
    assert "| Confirmed alerts: median lag (days) | 10.0 |" in md


def test_nothing_detected(tmp_path, truth):
    mask, dates = _detections({})
    m = _assess(tmp_path, truth, mask, dates)
    assert m["disturbed_forest_pixels"] == DISTURBED
    assert m["detected_share"] == 0.0
    assert m["detected_share_clear_cut"] == 0.0
    assert m["detected_share_partial"] == 0.0
    assert m["detected_before_true_date_share"] == 0.0
    assert m["false_alarm_share"] == 0.0
    assert m["median_lag_days"] is None
    assert m["p90_lag_days"] is None
    md = to_markdown(m)
    assert "| Confirmed alerts: detected share of disturbed forest | 0.0 % |" in md


def test_markdown_without_detections_says_na_for_lag(tmp_path, truth):
    mask, dates = _detections({})
    md = to_markdown(_assess(tmp_path, truth, mask, dates))
    assert "| Confirmed alerts: median lag (days) | n/a |" in md
    assert "None" not in md


def test_false_alarms(tmp_path, truth):
    mask, dates = _detections({"A": 10, "B": 20, "C": 30})
    core_alarms = [(4, 20), (12, 20), (14, 30), (25, 14), (34, 20), (35, 35)]
    not_assessed = [
        (2, 20),   # outermost forest ring (forest edge)
        (13, 9),   # ring around A (edge of the disturbed area)
        (30, 8),   # inside L (disturbed too late to assess)
        (30, 28),  # inside P (disturbed before monitoring)
        (0, 0),    # not forest
    ]
    for rc in core_alarms + not_assessed:
        mask[rc] = 3
        dates[rc] = day("2023-05-05")
    m = _assess(tmp_path, truth, mask, dates)
    assert m["undisturbed_forest_pixels"] == UNDISTURBED
    assert m["false_alarm_share"] == pytest.approx(6 / UNDISTURBED, abs=1e-4)
    assert m["detected_share"] == 1.0
    # lags: A 25 px at 10 d, B 25 px at 20 d, C 9 px at 30 d -> median 20, p90 30
    assert m["median_lag_days"] == 20.0
    assert m["p90_lag_days"] == 30.0
    # the non-forest pixel flagged 3 counts as "monitored" outside the forest; the mask
    # accuracies use forest pixels off every edge: undisturbed core + the inner part of
    # all five patches = 867 + 25 + 25 + 9 + 9 + 9 = 944
    assert m["forest_mask_users_accuracy"] == pytest.approx(944 / 945, abs=1e-4)
    assert m["forest_mask_producers_accuracy"] == 1.0
    # 6 / 867 = 0.69 %
    assert "| Confirmed alerts: false-alarm share of undisturbed forest | 0.7 % |" in to_markdown(m)


def test_detection_before_true_date_is_not_a_detection(tmp_path, truth):
    mask, dates = _detections({"A": -5, "B": 10, "C": 0})
    m = _assess(tmp_path, truth, mask, dates)
    assert m["detected_share"] == pytest.approx((25 + 9) / DISTURBED, abs=1e-4)
    assert m["detected_before_true_date_share"] == pytest.approx(25 / DISTURBED, abs=1e-4)
    assert m["detected_share_clear_cut"] == pytest.approx(9 / CLEAR_CUT, abs=1e-4)
    assert m["detected_share_partial"] == 1.0
    # lags only from real detections: B 25 px at 10 d, C 9 px at 0 d (same day counts)
    assert m["median_lag_days"] == 10.0
    assert m["false_alarm_share"] == 0.0
    # 34 / 59 = 57.6 %
    assert "| Confirmed alerts: detected share of disturbed forest | 57.6 % |" in to_markdown(m)


def test_late_disturbances_are_not_assessed(tmp_path, truth):
    """C (monitor_end - 30 d) is assessed, L (monitor_end - 29 d) is not: with neither
    detected, the detected share is A + B out of A + B + C."""
    mask, dates = _detections({"A": 10, "B": 10})
    m = _assess(tmp_path, truth, mask, dates)
    assert m["disturbed_forest_pixels"] == DISTURBED
    assert m["detected_share"] == pytest.approx(50 / 59, abs=1e-4)
    assert m["detected_share_clear_cut"] == pytest.approx(25 / 34, abs=1e-4)
    # a shorter lead time brings L (9 core px) into the assessment
    m29 = _assess(tmp_path / "lead29", truth, mask, dates, min_lead_days=29)
    assert m29["disturbed_forest_pixels"] == DISTURBED + 9
    assert m29["detected_share"] == pytest.approx(50 / 68, abs=1e-4)
    assert m29["undisturbed_forest_pixels"] == UNDISTURBED


def test_first_detections_false_starts_and_open_alerts(tmp_path, truth):
    """The alert ladder's metrics from status and first-detection rasters: A confirmed and
    first seen 2 days after its date, B provisional 4 days after, C first seen 5 days
    *before* its date; on undisturbed forest 2 x 2 px with an open first detection and
    2 x 2 px returned to normal."""
    mask, dates = _detections({"A": 10})
    status = np.zeros((N, N), np.uint8)
    first = np.zeros((N, N), np.int32)
    for name, code, lag in (("A", 3, 2), ("B", 2, 4), ("C", 1, -5)):
        rows, cols, _, d = PATCHES[name]
        status[rows, cols] = code
        first[rows, cols] = d + lag
    status[34:36, 14:16] = 1
    first[34:36, 14:16] = day("2023-05-01")
    status[34:36, 18:20] = 4
    _write(tmp_path / "status.tif", status, "uint8")
    _write(tmp_path / "first.tif", first, "int32")
    m = _assess(tmp_path, truth, mask, dates, status_vrt=tmp_path / "status.tif",
                first_vrt=tmp_path / "first.tif")["first_detection"]
    assert m["detected_share"] == round(50 / 59, 4)  # A and B; C started too early
    assert m["detected_before_true_date_share"] == round(9 / 59, 4)
    assert m["median_lag_days"] == 3.0  # 25 px at 2 days, 25 at 4
    assert m["p90_lag_days"] == 4.0
    assert m["open_unconfirmed_on_undisturbed_share"] == round(4 / UNDISTURBED, 4)
    assert m["false_start_on_undisturbed_share"] == round(4 / UNDISTURBED, 4)
    # of the core forest pixels with an alert episode (25 + 25 + 9 + 4 + 4), 4 returned
    assert m["false_start_share"] == round(4 / 67, 4)
    md = to_markdown(_assess(tmp_path, truth, mask, dates, status_vrt=tmp_path / "status.tif",
                             first_vrt=tmp_path / "first.tif"))
    assert "| First detections: median lag (days) | 3.0 |" in md


def test_shares_per_disturbance_type_present_in_the_truth(tmp_path, truth):
    # without thinning or storm damage in the truth there are no rows for them
    mask, dates = _detections({"A": 10, "C": 10})
    plain = _assess(tmp_path / "plain", truth, mask, dates)
    assert "detected_share_thinning" not in plain and "detected_share_storm" not in plain
    assert "thinning" not in to_markdown(plain)
    # A becomes a thinning (25 core px), B storm damage (25): A and C (clear-cut, 9) found
    kind = np.zeros((N, N), np.uint8)
    for name, (rows, cols, t, _) in PATCHES.items():
        kind[rows, cols] = {"A": 3, "B": 4}.get(name, t)
    _write(truth / "disturbance_type.tif", kind, "uint8")
    m = _assess(tmp_path / "typed", truth, mask, dates)
    assert m["detected_share_thinning"] == 1.0
    assert m["detected_share_storm"] == 0.0
    assert m["detected_share_clear_cut"] == 1.0
    assert m["detected_share_partial"] is None  # no partial dieback left
    assert m["detected_share"] == pytest.approx((25 + 9) / DISTURBED, abs=1e-4)
    md = to_markdown(m)
    assert "thinning | 100.0 %" in md
    assert "storm damage | 0.0 %" in md
    assert "partial dieback | n/a" in md
