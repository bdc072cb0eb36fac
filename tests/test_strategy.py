"""The strategy run (forestwatch.strategy): candidates from the config, consensus, scores
and ranking on hand-made inputs, and end to end: ``snakemake strategy`` on the small
archive with reference points from its truth, the configured candidate's scores checked
against the workflow's own report layers at those points.

(The reference reader and the stratified estimators have their own tests:
test_strategy_reference.py, test_strategy_estimate.py.)
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import re
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from conftest import small_config, snakemake
from scipy import ndimage
from shapely.geometry import Point

from forestwatch.accuracy import TYPES
from forestwatch.alerts.ladder import CONFIRMED, FIRST, NO_ALERT, NO_DATA, PROVISIONAL, RECOVERED
from forestwatch.config import MONITOR_DEFAULTS, ConfigError, deep_update, validate_config
from forestwatch.grid import make_tiles
from forestwatch.layout import RunLayout
from forestwatch.strategy.candidates import Consensus, describe, expand_candidates
from forestwatch.strategy.estimate import stratified_estimate
from forestwatch.strategy.samples import ScoringSamples
from forestwatch.strategy.scores import Scores, rank, sample_answers, score
from forestwatch.strategy.series import TilePixels
from forestwatch.strategy.simulate import Outcome, combine

EPOCH = dt.date(1970, 1, 1)
IQR = MONITOR_DEFAULTS["IQR"]


def days(iso: str) -> int:
    return (dt.date.fromisoformat(iso) - EPOCH).days


def strategy_config(**strategy) -> dict:
    """The validated small config with this ``strategy`` section."""
    return small_config(strategy=strategy)


def core(cand) -> dict:
    """A candidate's nrt monitor configuration (without the regional screen)."""
    return {k: v for k, v in cand.monitor.items() if k != "regional_screening"}


def triples(cands) -> set[tuple]:
    return {(c.index, c.monitor["class"], tuple(sorted(c.monitor["params"].items())),
             tuple(sorted(c.monitor["fit"].items()))) for c in cands}


# -- candidates --------------------------------------------------------------------------

def test_a_grid_expands_to_the_product_of_its_lists():
    cfg = strategy_config(include_configured=False, grid=[
        {"index": ["NDVI", "NBR"], "class": ["IQR"],
         "params": {"sensitivity": [2.0, 3.0], "boundary": [3, 5]},
         "fit": [{"method": "OLS"}, {"method": "RIRLS"}]},
        {"index": ["NDMI"], "class": ["EWMA", "IQR"]}])
    cands, cons = expand_candidates(cfg)
    assert cons == []
    first = {(index, "IQR", tuple(sorted({**IQR["params"], "sensitivity": s,
                                            "boundary": b}.items())), (("method", m),))
             for index, s, b, m in itertools.product(["NDVI", "NBR"], [2.0, 3.0], [3, 5],
                                                     ["OLS", "RIRLS"])}
    second = {("NDMI", cls, tuple(sorted(MONITOR_DEFAULTS[cls]["params"].items())),
               tuple(sorted(MONITOR_DEFAULTS[cls]["fit"].items())))
              for cls in ("EWMA", "IQR")}
    assert len(cands) == 2 * 2 * 2 * 2 + 2
    assert triples(cands) == first | second
    assert len({c.name for c in cands}) == len(cands)


def test_absent_params_take_the_measured_defaults():
    cfg = strategy_config(include_configured=False, candidates=[
        {"name": "bare", "index": "NBR"},
        {"name": "ewma", "monitor": {"class": "EWMA"}},
        {"name": "partial", "monitor": {"params": {"sensitivity": 3.0}}},
        {"name": "fit only", "monitor": {"class": "IQR", "fit": {"method": "RIRLS"}}},
    ], grid=[{"index": ["NDMI"], "params": {"sensitivity": [2.5]}}])
    by_name = {c.name: c for c in expand_candidates(cfg)[0]}
    assert by_name["bare"].index == "NBR"
    assert core(by_name["bare"]) == {"class": "IQR", **IQR}
    assert by_name["ewma"].index == cfg["index"]  # the workflow's index
    assert core(by_name["ewma"]) == {"class": "EWMA", **MONITOR_DEFAULTS["EWMA"]}
    # a candidate that sets some parameters gets the others from the defaults, as a grid
    # entry does: otherwise nrt's own defaults (trend=True, harmonic_order=3) would run,
    # and the recommended block merged into a config would not be the candidate scored
    assert core(by_name["partial"]) == {
        "class": "IQR", "params": {**IQR["params"], "sensitivity": 3.0}, "fit": IQR["fit"]}
    assert core(by_name["fit only"]) == {
        "class": "IQR", "params": IQR["params"], "fit": {"method": "RIRLS"}}
    grid = [c for c in by_name.values() if c.index == "NDMI"]
    assert [core(c) for c in grid] == [
        {"class": "IQR", "params": {**IQR["params"], "sensitivity": 2.5}, "fit": IQR["fit"]}]
    # the regional screen is the workflow's unless a candidate says otherwise
    assert all(c.monitor["regional_screening"] == cfg["monitor"]["regional_screening"]
               for c in by_name.values())


def test_the_configured_candidate_comes_first_and_is_not_repeated_by_a_grid():
    cfg = small_config(index="NDVI", monitor={"params": dict(IQR["params"])}, strategy={
        "grid": [{"index": ["NBR", "NDVI"], "class": ["IQR"],
                  "params": {"sensitivity": [IQR["params"]["sensitivity"], 3.0]}}]})
    assert cfg["index"] == "NDVI" and cfg["monitor"]["params"] == IQR["params"]
    cands, _ = expand_candidates(cfg)
    assert cands[0].name.endswith("(configured)")
    assert (cands[0].index, cands[0].monitor) == (
        "NDVI", {k: cfg["monitor"][k] for k in ("class", "params", "fit", "regional_screening")})
    # NDVI at the default sensitivity is the configured candidate: 4 grid entries, 3 new
    assert len(cands) == 4
    assert len(triples(cands)) == 4
    assert ("NDVI", "IQR", tuple(sorted(IQR["params"].items())),
            tuple(sorted(IQR["fit"].items()))) in triples(cands[:1])


def test_grid_names_say_which_screen_a_candidate_runs():
    cfg = small_config(index="NBR", strategy={"include_configured": False, "grid": [
        {"index": ["NBR"], "class": ["IQR"],
         "regional_screening": [{}, {"by_seasonality": False}, None]}]})
    assert cfg["monitor"]["regional_screening"]["by_seasonality"] is True  # the default
    cands, _ = expand_candidates(cfg)
    names = [c.name for c in cands]
    assert names[0] == "NBR IQR"
    assert names[1].startswith("NBR IQR screen=") and names[1].endswith("/all-forest")
    assert names[2] == "NBR IQR screen=off"
    assert [c.monitor["regional_screening"]["by_seasonality"] for c in cands[:2]] == [True,
                                                                                      False]


@pytest.mark.parametrize("strategy, words", [
    ({"candidates": [{"name": "touchy", "monitor": {"params": {"sensitivity": -1}}}]},
     ["strategy.candidates[0]", "'touchy'", "sensitivity", "-1"]),
    ({"grid": [{"params": {"sensitivty": [2.0, 3.0]}}]},
     ["strategy.grid[0]", "sensitivty", "not a parameter"]),
    ({"grid": [{"fit": [{"method": "OLS", "bogus": 1}]}]},
     ["strategy.grid[0]", "bogus"]),
    ({"candidates": [{"name": "a", "index": "NBR"},
                     {"name": "a", "index": "NDMI"}]},
     ["unique", "'a'"]),
    ({"candidates": [{"name": "a", "index": "NBR"}],
      "consensus": [{"name": "both", "members": ["a", "b"]}]},
     ["strategy.consensus[0]", "'both'", "'b'", "not candidates"]),
    ({"candidates": [{"name": "a", "index": "NBR"}, {"name": "b", "index": "NDMI"}],
      "consensus": [{"name": "both", "members": ["a", "b"], "k": 3}]},
     ["strategy.consensus[0]", "k = 3", "2 members"]),
    ({"candidates": [{"name": "a", "index": "NBR"}, {"name": "b", "index": "NDMI"}],
      "consensus": [{"name": "a", "members": ["a", "b"], "k": 1}]},
     ["strategy.consensus[0]", "already a candidate"]),
    ({"include_configured": False}, ["no candidate", "include_configured"]),
])
def test_bad_strategy_sections_name_what_to_fix(strategy, words):
    cfg = strategy_config(**strategy)
    with pytest.raises(ConfigError) as err:
        expand_candidates(cfg)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


# -- consensus ---------------------------------------------------------------------------

def outcome(rows: list[tuple[int, int, int]]) -> Outcome:
    """An Outcome from (status, first_date, confirmed_date) per pixel."""
    s, f, c = zip(*rows, strict=True)
    return Outcome(np.array(s, np.uint8), np.array(f, np.int32), np.array(c, np.int32))


# pixel:        0              1              2                 3                4              5
A = outcome([(CONFIRMED, 5, 10), (CONFIRMED, 25, 30), (RECOVERED, 7, 0), (NO_DATA, 0, 0),
             (NO_DATA, 0, 0), (RECOVERED, 3, 0)])
B = outcome([(CONFIRMED, 8, 20), (PROVISIONAL, 12, 0), (CONFIRMED, 45, 50), (NO_DATA, 0, 0),
             (NO_ALERT, 0, 0), (RECOVERED, 4, 0)])
C = outcome([(NO_ALERT, 0, 0), (FIRST, 40, 0), (CONFIRMED, 55, 60), (NO_DATA, 0, 0),
             (CONFIRMED, 65, 70), (FIRST, 9, 0)])


@pytest.mark.parametrize("k, status, first, confirmed", [
    # k=1: the highest status any member has, the earliest dates
    (1, [CONFIRMED, CONFIRMED, CONFIRMED, NO_DATA, CONFIRMED, FIRST],
     [5, 12, 45, 0, 65, 9], [10, 30, 50, 0, 70, 0]),
    # k=2: pixel 1 has one confirmed and two open -> provisional (the 2nd highest level),
    # first date the 2nd earliest open (25); pixel 2: A returned to normal, so its stale
    # first date 7 does not count; pixel 5: two returned to normal -> returned to normal,
    # dated by the second of them (4)
    (2, [CONFIRMED, PROVISIONAL, CONFIRMED, NO_DATA, NO_ALERT, RECOVERED],
     [8, 25, 55, 0, 0, 4], [20, 0, 60, 0, 0, 0]),
    # k=3: every member must be at the level; a member with no data or returned to normal
    # is no alert (pixel 4 is monitored by two members: no alert, not no data; pixel 5:
    # two returned to normal of three is not a consensus of three)
    (3, [NO_ALERT, FIRST, NO_ALERT, NO_DATA, NO_ALERT, NO_ALERT],
     [0, 40, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]),
])
def test_consensus_is_the_kth_member(k, status, first, confirmed):
    out = combine(Consensus("c", ("a", "b", "c"), k), [A, B, C])
    assert out.status.tolist() == status
    assert out.first_date.tolist() == first
    assert out.confirmed_date.tolist() == confirmed
    assert out.status.dtype == np.uint8 and out.first_date.dtype == np.int32


# -- scores and ranking ------------------------------------------------------------------

def hand_made():
    """Ten samples on two tiles (docstring of test_scores_by_hand)."""
    samples = ScoringSamples(
        disturbed=np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool),
        kind=np.array(["clear_cut", "clear_cut", "partial", "partial", "partial",
                       "", "", "", "", ""], dtype=object),
        date=np.array([100, 200, 300, 400, 150, -1, -1, -1, -1, -1], np.int64),
        weight=np.array([1, 1, 5, 2, 1, 3, 10, 4, 6, 2], np.float64),
        stratum=None, strata_area_ha=None, source="hand-made")
    # (sample, monitored, status, first, confirmed) per pixel
    west = [(0, True, CONFIRMED, 110, 120),
            (1, True, CONFIRMED, 180, 190),   # confirmed before the true date
            (2, True, CONFIRMED, 305, 390),
            (2, True, CONFIRMED, 301, 340),
            (3, True, FIRST, 410, 0),
            (4, False, CONFIRMED, 160, 170),  # outside the forest mask
            (5, True, CONFIRMED, 480, 500),
            (6, True, FIRST, 600, 0),
            (6, True, PROVISIONAL, 610, 0),
            (6, True, CONFIRMED, 590, 620),
            (7, False, CONFIRMED, 700, 710),  # outside the forest mask
            (-1, True, CONFIRMED, 1, 2)]      # a quicklook pixel: no sample
    east = [(2, True, CONFIRMED, 302, 350),
            (2, True, NO_ALERT, 0, 0),
            (2, True, NO_ALERT, 0, 0),
            (8, True, CONFIRMED, 800, 810),
            (8, True, CONFIRMED, 805, 830),
            (8, False, NO_ALERT, 0, 0),
            (8, False, NO_ALERT, 0, 0),
            (8, False, NO_ALERT, 0, 0),
            (9, True, NO_ALERT, 0, 0),
            (9, False, CONFIRMED, 900, 910),  # outside the mask: does not count
            (9, False, CONFIRMED, 900, 910)]
    pixels, outcomes = [], []
    for tile, rows in (("W", west), ("E", east)):
        s, m, st, f, c = (np.array(v) for v in zip(*rows, strict=True))
        pixels.append(TilePixels(tile_id=tile, rows=np.arange(len(s)), cols=np.zeros(len(s), int),
                                 sample=s.astype(np.int64), monitored=m.astype(bool)))
        outcomes.append(Outcome(st.astype(np.uint8), f.astype(np.int32), c.astype(np.int32)))
    return samples, pixels, outcomes


def test_sample_answers_majority_and_median():
    samples, pixels, outcomes = hand_made()
    ans = sample_answers(len(samples), pixels, outcomes)
    # sample 2: 5 pixels over two tiles, 3 confirmed (340, 350, 390): median 350; its
    # open pixels' first dates 301, 302, 305: median 302
    # sample 6: 1 of 3 confirmed; 2 of 3 open unconfirmed
    # sample 8: 2 monitored pixels, both confirmed: the 3 outside the mask do not count;
    # sample 9: its one monitored pixel has no alert, the 2 confirmed outside the mask
    # do not count (dates are read only where the sample is confirmed / open)
    assert ans.confirmed.tolist() == [1, 1, 1, 0, 0, 1, 0, 0, 1, 0]
    assert np.where(ans.confirmed, ans.confirmed_date, 0).tolist() == [
        120, 190, 350, 0, 0, 500, 0, 0, 810, 0]
    assert ans.open.tolist() == [1, 1, 1, 1, 0, 1, 1, 0, 1, 0]
    assert np.where(ans.open, ans.first_date, 0).tolist() == [
        110, 180, 302, 410, 0, 480, 600, 0, 800, 0]
    assert ans.open_unconfirmed.tolist() == [0, 0, 0, 1, 0, 0, 1, 0, 0, 0]
    assert ans.monitored.tolist() == [1, 1, 1, 1, 0, 1, 1, 0, 1, 1]


def test_scores_by_hand():
    """Disturbed (weight): 0 clear-cut (1) detected 20 d late, first 10 d; 1 clear-cut
    (1) confirmed before its date: not detected, a commission; 2 partial (5), a polygon:
    detected 50 d late, first 2 d; 3 partial (2): first detection only, 10 d; 4 partial
    (1) outside the mask. Stable: 5 (3) confirmed: a false alarm; 6 (10) open unconfirmed;
    7 (4) confirmed but outside the mask: nothing; 8 (6) a polygon confirmed on its two
    monitored pixels: a false alarm; 9 (2) no alert on its monitored pixel."""
    samples, pixels, outcomes = hand_made()
    m = score("x", samples, sample_answers(len(samples), pixels, outcomes)).metrics
    disturbed_w, stable_w = 1 + 1 + 5 + 2 + 1, 3 + 10 + 4 + 6 + 2
    expected = {
        "detected": (1 + 5) / disturbed_w,
        "omission": 1 - (1 + 5) / disturbed_w,
        "detected_clear_cut": 1 / 2,
        "detected_partial": 5 / (5 + 2 + 1),
        "type_mean": (1 / 2 + 5 / 8) / 2,
        "false_alarms": (3 + 6) / stable_w,
        "first_detected": (1 + 5 + 2) / disturbed_w,
        "first_open_on_stable": 10 / stable_w,
        "not_monitored": (1 + 4) / (disturbed_w + stable_w),
        # confirmed: samples 0, 1, 2, 5, 8; of them detected on time: 0 and 2
        "commission": 1 - (1 + 5) / (1 + 1 + 5 + 3 + 6),
    }
    p, r = 1 - expected["commission"], expected["detected"]
    expected["f1"] = 2 * p * r / (p + r)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=6e-5), key
    # weighted median: lags 20 (weight 1) and 50 (weight 5): 50, where an unweighted
    # median would say 20; first lags 2 (5), 10 (1), 10 (2): 2
    assert m["median_lag"] == 50
    assert m["p90_lag"] == 50
    assert m["first_median_lag"] == 2
    assert m["first_p90_lag"] == 10
    assert (m["samples_disturbed"], m["samples_stable"]) == (5, 5)


def test_unweighted_samples_count_once():
    samples, pixels, outcomes = hand_made()
    flat = ScoringSamples(**{**samples.__dict__, "weight": np.ones(len(samples))})
    m = score("x", flat, sample_answers(len(flat), pixels, outcomes)).metrics
    assert m["detected"] == pytest.approx(2 / 5, abs=6e-5)
    assert m["false_alarms"] == pytest.approx(2 / 5, abs=6e-5)
    assert m["detected_partial"] == pytest.approx(1 / 3, abs=6e-5)
    assert m["median_lag"] == 20  # lower median of 20 and 50


def test_a_candidate_over_the_false_alarm_limit_ranks_after_every_one_within_it():
    def s(name, fa, tm, lag=10.0):
        return Scores(name, {"false_alarms": fa, "type_mean": tm, "first_median_lag": lag})

    scores = [s("noisy best", 0.20, 0.99), s("within low", 0.01, 0.40),
              s("within high", 0.0, 0.70), s("slightly noisy", 0.02, 0.95),
              s("within tie slow", 0.005, 0.70, lag=30.0), s("no stable", None, 0.9)]
    order = [x.name for x in rank(scores, by="type_mean", max_false_alarm_share=0.01)]
    assert order[:3] == ["within high", "within tie slow", "within low"]
    # then the others, by false alarms (fewer first), whatever their score
    assert set(order[3:]) == {"slightly noisy", "noisy best", "no stable"}
    assert order.index("slightly noisy") < order.index("noisy best")
    # a looser limit lets the best scorer win
    assert rank(scores, by="type_mean", max_false_alarm_share=0.5)[0].name == "noisy best"


# -- end to end --------------------------------------------------------------------------

RUN = RunLayout("results/small")  # the small config's run folder, relative to a workdir
N_DISTURBED, N_STABLE = 40, 60
LEAD_DAYS = 30
# LATE of the disturbed points are dated LATE_DAYS after the truth's date (an interpreter
# who dates a disturbance at a later image): the workflow may have confirmed them before
# that date, which is then not a detection on time
LATE, LATE_DAYS = 8, 45
# the small config's monitor (the test suite keeps a less sensitive band than the shipped
# one: tests/config/small.yaml); the grid's entry with the configured index repeats it
_SMALL = small_config()
_PARAMS = {k: [v] for k, v in _SMALL["monitor"]["params"].items()}
GRID = [{"index": ["NDVI", "NBR"], "class": ["IQR"], "params": _PARAMS},
        {"index": ["NDVI"], "params": {**_PARAMS, "sensitivity": [3.0]}}]
CONFIGURED = describe(_SMALL["index"], _SMALL["monitor"]) + " (configured)"
OTHERS = [describe(index, {**_SMALL["monitor"], "params": {
    **_SMALL["monitor"]["params"], "sensitivity": sens}})
    for index, sens in (("NDVI", 2.0), ("NDVI", 3.0))]
CONSENSUS = {"name": "two of three", "k": 2, "members": [CONFIGURED, *OTHERS]}


def reference_points(workdir: Path, cfg: dict, seed: int = 1) -> gpd.GeoDataFrame:
    """Points at pixel centres of the truth's core pixels inside the tiles (a 3 x 3
    window of forest with one disturbance date and type): N_DISTURBED disturbed in the
    monitoring period at least LEAD_DAYS before its end (LATE of them dated late),
    N_STABLE stable; stratum: the tile (west/east), its area the truth's forest area on
    the tile."""
    truth = workdir / cfg["synthetic"]["folder"] / "truth"
    with rasterio.open(truth / "forest.tif") as src:
        forest, transform = src.read(1), src.transform
    with rasterio.open(truth / "disturbance_date.tif") as src:
        date = src.read(1).astype(np.int64)
    with rasterio.open(truth / "disturbance_type.tif") as src:
        kind = src.read(1)
    same = np.ones(forest.shape, bool)
    for a in (date, kind):
        same &= ndimage.maximum_filter(a, 3) == ndimage.minimum_filter(a, 3)
    core = (ndimage.minimum_filter(forest, 3, mode="constant", cval=0) == 1) & same
    rows, cols = np.indices(forest.shape)
    x = transform.c + (cols + 0.5) * transform.a
    y = transform.f + (rows + 0.5) * transform.e
    tiles = sorted(make_tiles(cfg), key=lambda t: t.bounds[0])
    assert len(tiles) == 2
    which = np.full(forest.shape, -1)
    for i, t in enumerate(tiles):
        x0, y0, x1, y1 = t.bounds
        which[(x > x0) & (x < x1) & (y > y0) & (y < y1)] = i
    start, end = days(str(cfg["history"]["end"])), days(str(cfg["fast_forward"]["until"]))
    disturbed = core & (which >= 0) & (date > start) & (date <= end - LEAD_DAYS)
    stable = core & (which >= 0) & (date == 0)
    rng = np.random.default_rng(seed)
    assert disturbed.sum() >= N_DISTURBED and stable.sum() >= N_STABLE
    picks = [(flat, label) for mask, n, label in ((disturbed, N_DISTURBED, "disturbed"),
                                                  (stable, N_STABLE, "stable"))
             for flat in rng.choice(np.flatnonzero(mask), n, replace=False)]
    names = ("west", "east")
    rows_out = []
    for i, (flat, label) in enumerate(picks):
        r, c = np.unravel_index(flat, forest.shape)
        late = LATE_DAYS if i < LATE else 0
        rows_out.append({
            "id": f"s{i:03d}", "label": label,
            "date": (EPOCH + dt.timedelta(days=int(date[r, c]) + late)).isoformat()
            if label == "disturbed" else None,
            "type": TYPES[int(kind[r, c])][0] if label == "disturbed" else None,
            "stratum": names[which[r, c]], "x": float(x[r, c]), "y": float(y[r, c])})
    frame = pd.DataFrame(rows_out)
    assert set(frame["stratum"]) == set(names)
    pixel_ha = cfg["grid"]["resolution"] ** 2 / 10_000
    areas = {names[i]: float((forest[which == i] == 1).sum()) * pixel_ha for i in range(2)}
    gdf = gpd.GeoDataFrame(frame.drop(columns=["x", "y"]),
                           geometry=[Point(a, b) for a, b in zip(frame.x, frame.y, strict=True)],
                           crs=cfg["grid"]["crs"])
    gdf.attrs["strata"] = areas
    return gdf


def write_strategy_config(path: Path, reference: Path, strata: dict, **extra) -> Path:
    path.write_text(yaml.safe_dump({"strategy": deep_update({
        "include_configured": True, "grid": GRID, "consensus": [CONSENSUS],
        "quicklooks": 1, "workers": 2,
        "reference": {"path": str(reference), "type_field": "type",
                      "stratum_field": "stratum", "strata": strata}}, extra)}))
    return path


@pytest.fixture(scope="session")
def strategy_run(workflow_run, tmp_path_factory):
    """``snakemake strategy`` in the workflow run's folder with reference points from the
    truth; its outputs and log are copied aside (a later failing run replaces them)."""
    workdir = workflow_run
    cfg = small_config()
    here = tmp_path_factory.mktemp("strategy")
    points = reference_points(workdir, cfg)
    points.to_file(here / "reference.gpkg", driver="GPKG")
    configfile = write_strategy_config(here / "strategy.yaml", here / "reference.gpkg",
                                       points.attrs["strata"])
    snakemake(workdir, "strategy", "--forcerun", "strategy", configfiles=(configfile,))
    out = here / "outputs"
    shutil.copytree(workdir / RUN.strategy(""), out)
    shutil.copy(workdir / RUN.log("strategy"), out / "strategy.log")
    return {"workdir": workdir, "here": here, "points": points, "out": out, "cfg": cfg,
            "configfile": configfile}


def ranking(run) -> dict[str, dict]:
    with open(run["out"] / "ranking.csv") as f:
        return {row["candidate"]: row for row in csv.DictReader(f)}


def expected_from_the_workflow(run) -> dict:
    """The configured candidate's scores from the workflow's report layers at the points,
    decided here per sample."""
    workdir, points, cfg = run["workdir"], run["points"], run["cfg"]
    tiles = make_tiles(cfg)
    values = {layer: np.zeros(len(points), np.int64)
              for layer in ("alert_status", "confirmation_date", "first_detection_date")}
    for i, geom in enumerate(points.geometry):
        tile = next(t for t in tiles if t.bounds[0] < geom.x < t.bounds[2]
                    and t.bounds[1] < geom.y < t.bounds[3])
        for layer in values:
            with rasterio.open(workdir / RUN.report(tile.id, layer)) as src:
                r, c = src.index(geom.x, geom.y)
                values[layer][i] = src.read(1)[r, c]
    status = values["alert_status"]
    disturbed = (points["label"] == "disturbed").to_numpy()
    date = np.array([days(d) if lab == "disturbed" else -1
                     for d, lab in zip(points["date"], points["label"], strict=True)], np.int64)
    strata = points.attrs["strata"]
    stratum = points["stratum"].to_numpy()
    weight = np.array([strata[s] / (stratum == s).sum() for s in stratum])
    confirmed = status == CONFIRMED
    detected = disturbed & confirmed & (values["confirmation_date"] >= date)
    first = (disturbed & np.isin(status, (FIRST, PROVISIONAL, CONFIRMED))
             & (values["first_detection_date"] >= date))

    def share(num, den):
        return float(weight[num & den].sum() / weight[den].sum())

    def wmedian(v, w):
        order = np.argsort(v, kind="stable")
        cum = np.cumsum(w[order])
        return float(v[order][np.searchsorted(cum, cum[-1] / 2)])

    out = {"detected": share(detected, disturbed),
           "false_alarms": share(confirmed, ~disturbed),
           "first_detected": share(first, disturbed),
           "first_open_on_stable": share(np.isin(status, (FIRST, PROVISIONAL)), ~disturbed),
           "commission": 1 - share(detected, confirmed),
           "median_lag": wmedian((values["confirmation_date"] - date)[detected],
                                 weight[detected]),
           "first_median_lag": wmedian((values["first_detection_date"] - date)[first],
                                       weight[first])}
    # as reported: the F1 of the reported (rounded) precision and recall
    p, r = 1 - round(out["commission"], 4), round(out["detected"], 4)
    out["f1"] = 2 * p * r / (p + r)
    kinds = sorted(set(points["type"].dropna()))
    for kind in kinds:
        out[f"detected_{kind}"] = share(detected, (points["type"] == kind).to_numpy())
    out["type_mean"] = float(np.mean([round(out[f"detected_{k}"], 4) for k in kinds]))
    est = stratified_estimate(
        map_class=np.where(confirmed, "disturbed", "stable"),
        reference_class=np.where(disturbed, "disturbed", "stable"),
        stratum=stratum, strata_size=strata)
    out["disturbed_area_ha"] = est.area["disturbed"][0]
    out["users_accuracy"] = est.users["disturbed"][0]
    out["producers_accuracy"] = est.producers["disturbed"][0]
    out["_counts"] = {"detected": int(detected.sum()), "confirmed": int(confirmed.sum()),
                      "not_monitored": int((status == NO_DATA).sum())}
    return out


@pytest.mark.workflow
def test_the_strategy_reproduces_the_workflow_for_the_configured_candidate(strategy_run):
    expected = expected_from_the_workflow(strategy_run)
    # the comparison means something only if the map has hits and misses at the points
    assert 0 < expected["_counts"]["detected"] < N_DISTURBED, expected["_counts"]
    row = ranking(strategy_run)[CONFIGURED]
    for key, value in expected.items():
        if key.startswith("_"):
            continue
        digits = 1 if key.endswith("_ha") or key.endswith("lag") else 4
        assert float(row[key]) == round(value, digits), (key, row[key], value)


@pytest.mark.workflow
def test_the_strategy_outputs_are_complete_and_valid(strategy_run):
    from PIL import Image

    out = strategy_run["out"]
    rows = ranking(strategy_run)
    names = {CONFIGURED, *OTHERS, "two of three"}
    assert set(rows) == names  # the grid's entry with the configured index is not repeated
    assert [int(r["rank"]) for r in rows.values()] == [1, 2, 3, 4]
    within = [r["within_limit"] == "True" for r in rows.values()]
    assert within == [float(r["false_alarms"]) <= 0.01 for r in rows.values()]
    assert within == sorted(within, reverse=True)  # every one within the limit first
    md = (out / "ranking.md").read_text()
    table = [line for line in md.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(table) == len(names)
    assert {next(n for n in names if f"| {n}" in line) for line in table} == names
    for name in ("tradeoff.png", "lags.png", "quicklooks.png"):
        with Image.open(out / name) as img:
            img.verify()
        with Image.open(out / name) as img:
            arr = np.asarray(img.convert("RGB"))
        assert arr.shape[0] > 100 and arr.shape[1] > 100, name
        assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 2, f"{name} is blank"
    text = (out / "recommended.yaml").read_text()
    block = yaml.safe_load(text)
    assert set(block) == {"index", "monitor", "consensus"}
    top = next(iter(rows))
    assert text.startswith(f"# The best candidate of the strategy run: {top}")
    merged = validate_config(deep_update(small_config(), block))
    assert merged["index"] == block["index"]
    assert merged["monitor"]["params"] == block["monitor"]["params"]
    if top == "two of three":  # the consensus is run as such: its three members, k = 2
        assert len(merged["consensus"]["members"]) == 2 and merged["consensus"]["k"] == 2
        assert "The best single candidate is" in text
    else:
        assert merged["consensus"]["members"] == [] and merged["consensus"]["k"] == 1


def test_a_consensus_block_runs_the_consensus_in_the_workflow():
    """The recommended block of a consensus, merged into a config, gives the workflow the
    consensus's members (its first as index + monitor) and k."""
    from forestwatch.strategy.candidates import Consensus, expand_candidates
    from forestwatch.strategy.outputs import consensus_block

    cfg = small_config(strategy={"grid": [], "include_configured": True, "candidates": [
        {"name": "ndmi", "index": "NDMI",
         "monitor": {"class": "IQR", "params": {"sensitivity": 1.5}}},
        {"name": "ndvi ccdc", "index": "NDVI", "monitor": {"class": "CCDC"}}],
        "consensus": []})
    candidates, _ = expand_candidates(cfg)
    by_name = {c.name: c for c in candidates}
    names = tuple(by_name)
    assert len(names) == 3
    block = consensus_block(Consensus(name="any two", members=names, k=2), by_name)
    merged = validate_config(deep_update(small_config(), block))
    run = [(merged["index"], merged["monitor"]["class"], merged["monitor"]["params"])]
    run += [(m["index"], m["monitor"]["class"], m["monitor"]["params"])
            for m in merged["consensus"]["members"]]
    assert run == [(by_name[n].index, by_name[n].monitor["class"], by_name[n].monitor["params"])
                   for n in names]
    assert merged["consensus"]["k"] == 2


@pytest.mark.workflow
def test_the_bands_are_read_once_per_tile(strategy_run):
    log = (strategy_run["out"] / "strategy.log").read_text()
    reads = re.findall(r"forestwatch\.strategy\.series: tile (\S+): .* read in (\d+) block",
                       log)
    tiles = sorted({t.id for t in make_tiles(strategy_run["cfg"])})
    assert sorted(t for t, _ in reads) == tiles, reads
    assert all(int(n) == 1 for _, n in reads)  # 60 x 60 px tiles: one block each
    assert "done in" in log


@pytest.mark.workflow
def test_an_unknown_label_fails_the_rule_with_the_reference_error(strategy_run):
    run = strategy_run
    bad = run["points"].copy()
    bad.loc[bad.index[3], "label"] = "cloudy"
    bad.to_file(run["here"] / "bad.gpkg", driver="GPKG")
    configfile = write_strategy_config(run["here"] / "bad.yaml", run["here"] / "bad.gpkg",
                                       bad.attrs["strata"])
    proc = snakemake(run["workdir"], "strategy", "--forcerun", "strategy", check=False,
                     configfiles=(configfile,))
    assert proc.returncode != 0
    log = (run["workdir"] / RUN.log("strategy")).read_text()
    assert "ReferenceDataError" in log
    assert "cloudy" in log and bad.loc[bad.index[3], "id"] in log
    said = proc.stdout + proc.stderr
    assert "Error in rule strategy" in said and RUN.log("strategy") in said
    assert not (run["workdir"] / RUN.strategy("ranking.csv")).exists()


def test_without_a_truth_the_run_asks_for_reference_samples(tmp_path):
    """A catalog of real data (not the synthetic source) has no truth: the rule passes no
    truth folder (rules/common.smk, get_strategy_truth), and the run says what to set."""
    from forestwatch.strategy.run import run_strategy

    catalog = tmp_path / "items.json"
    catalog.write_text("[]")
    cfg = small_config(stac={"source": "local", "catalog": str(catalog)})
    with pytest.raises(ConfigError, match=r"Set strategy\.reference\.path"):
        run_strategy(cfg, catalog=str(catalog), masks={}, truth_dir=None)
