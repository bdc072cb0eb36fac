"""Several days of operation on the synthetic archive, published day by day.

A local STAC catalog grows as the days pass (items appear on their acquisition date, one
is published late, one is republished with a newer processing baseline); the daily run
must end in the same state as one fast-forward over the same acquisitions, apply nothing
twice, survive a SIGKILL in the middle of a state write and recover from a corrupt state.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forestwatch import steps
from forestwatch.config import deep_update, validate_config
from forestwatch.grid import make_tiles
from forestwatch.monitoring import fast_forward
from forestwatch.operational import run_daily, state_paths
from forestwatch.stac import read_item_collection, search_items, solar_day
from forestwatch.state import load_state, monitors_equal, save_state

CATCH_UP = "2023-03-31"  # fast_forward.until: the operational days start after it
LAST_DAY = dt.date(2023, 6, 30)


def _publish(all_items: list[dict], path: Path, today: dt.date, withheld: set[str],
             extra: list[dict] = ()) -> None:
    feats = [f for f in all_items if f["properties"]["datetime"][:10] <= str(today)
             and f["id"] not in withheld] + list(extra)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


@pytest.fixture(scope="module")
def setup(small_archive, tmp_path_factory):
    """Fitted and caught-up states for both tiles; the full item list with absolute hrefs."""
    root = tmp_path_factory.mktemp("operation")
    items = read_item_collection(small_archive["catalog"])  # hrefs made absolute
    features = [it.to_dict() for it in items]
    _publish(features, root / "published.json", dt.date.fromisoformat(CATCH_UP), set())
    cfg = validate_config(deep_update(small_archive["cfg"], {
        "stac": {"catalog": str(root / "published.json")},
        "fast_forward": {"until": CATCH_UP},
        "forest_mask": {"method": "file",
                        "file": {"path": str(small_archive["folder"] / "truth" / "tree_cover.tif")}},
        "operational": {"lookback_days": 20, "retry_delay_s": 0.01, "keep_states": 10},
    }))
    base = root / "base"
    for tile in make_tiles(cfg):
        fitted = base / "state" / "fitted" / f"{tile.id}.nc"
        steps.forest_mask(cfg, tile.id, None, cfg["forest_mask"]["file"]["path"],
                          base / "mask" / f"{tile.id}.tif")
        steps.fit(cfg, tile.id, cfg["stac"]["catalog"], base / "mask" / f"{tile.id}.tif", fitted)
        steps.fast_forward(cfg, tile.id, cfg["stac"]["catalog"], fitted,
                           state_paths(base, tile.id)[0])
    return {"cfg": cfg, "features": features, "base": base, "root": root}


def _copy_run(setup, name: str) -> Path:
    import shutil

    run = setup["root"] / name
    shutil.copytree(setup["base"], run)
    return run


def _days():
    d = dt.date.fromisoformat(CATCH_UP) + dt.timedelta(days=1)
    while d < LAST_DAY:
        yield d
        d += dt.timedelta(days=4)
    yield LAST_DAY


def _reference(setup, tile_id: str):
    """One fast-forward from the fitted state over every acquisition up to LAST_DAY."""
    cfg = setup["cfg"]
    tile = next(t for t in make_tiles(cfg) if t.id == tile_id)
    full = setup["root"] / "all.json"
    _publish(setup["features"], full, LAST_DAY, set())
    state = load_state(setup["base"] / "state" / "fitted" / f"{tile_id}.nc")
    items = search_items(cfg["stac"], tile.bbox_lonlat(), state.metadata["history"]["end"],
                         LAST_DAY, str(full))
    fast_forward(state, items, tile, deep_update(cfg, {"fast_forward": {"until": str(LAST_DAY)}}))
    return state


def _late_item(setup) -> dict:
    """One granule of an acquisition in mid-May, published two weeks late."""
    return next(f for f in setup["features"] if f["properties"]["datetime"].startswith("2023-05")
                and f["properties"]["s2:mgrs_tile"].startswith("33"))


def _simulate(setup, run: Path, policy: str, reprocessed: bool = False) -> list[dict]:
    cfg = deep_update(setup["cfg"], {"operational": {"late_items": policy}})
    late = _late_item(setup)
    late_day = dt.date.fromisoformat(late["properties"]["datetime"][:10])
    extra: list[dict] = []
    records = []
    for today in _days():
        withheld = {late["id"]} if today < late_day + dt.timedelta(days=14) else set()
        if reprocessed and today >= dt.date(2023, 6, 1):
            dup = copy.deepcopy(next(f for f in setup["features"]
                                     if f["properties"]["datetime"].startswith("2023-05-2")))
            dup["id"] += "_N0510"
            dup["properties"]["s2:processing_baseline"] = "05.10"
            extra = [dup]
        _publish(setup["features"], Path(cfg["stac"]["catalog"]), today, withheld, extra)
        records.append(run_daily(cfg, run, cfg["stac"]["catalog"], today))
    return records


@pytest.fixture(scope="module")
def replay_run(setup):
    run = _copy_run(setup, "replay")
    return run, _simulate(setup, run, "replay", reprocessed=True)


def test_daily_runs_end_in_the_state_of_one_fast_forward(setup, replay_run):
    run, records = replay_run
    assert sum(r["items_applied"] for r in records) > 0
    for tile in make_tiles(setup["cfg"]):
        daily = load_state(state_paths(run, tile.id)[0])
        ref = _reference(setup, tile.id)
        assert [e["day"] for e in daily.metadata["applied"]] == [e["day"] for e in ref.metadata["applied"]]
        assert daily.applied_items == ref.applied_items
        assert monitors_equal(daily.monitor, ref.monitor)
        assert (daily.monitor.mask == 3).any()


def test_late_item_is_replayed_and_reported(setup, replay_run):
    _, records = replay_run
    late = _late_item(setup)
    replays = [(r["today"], tid, t["replayed_from"]) for r in records
               for tid, t in r["tiles"].items() if t.get("replayed_from")]
    assert replays, "the late item never triggered a replay"
    for tile in make_tiles(setup["cfg"]):  # applied at most once per tile, in the replay
        times = [r["today"] for r in records
                 if late["id"] in r["tiles"].get(tile.id, {}).get("applied_items", [])]
        assert len(times) <= 1
    assert any(late["id"] in t.get("applied_items", []) for r in records for t in r["tiles"].values())


def test_reprocessed_duplicate_is_applied_once(setup, replay_run):
    run, records = replay_run
    dup_reports = [s for r in records for t in r["tiles"].values() for s in t.get("skipped", [])
                   if s["item"].endswith("_N0510")]
    assert dup_reports and all("reprocessed duplicate" in s["reason"] for s in dup_reports)
    # reported once per tile, not every day
    assert len(dup_reports) == len({s["item"] for s in dup_reports}) * len(
        [t for t in make_tiles(setup["cfg"])
         if any(s["item"].endswith("_N0510") for r in records
                for s in r["tiles"].get(t.id, {}).get("skipped", []))])
    for tile in make_tiles(setup["cfg"]):
        state = load_state(state_paths(run, tile.id)[0])
        assert not any(i.endswith("_N0510") for i in state.applied_items)


def test_second_run_the_same_day_does_nothing(setup, replay_run):
    run, _ = replay_run
    cfg = setup["cfg"]
    paths = [state_paths(run, t.id)[0] for t in make_tiles(cfg)]
    before = [(p.stat().st_mtime_ns, p.read_bytes()) for p in paths]
    record = run_daily(cfg, run, cfg["stac"]["catalog"], LAST_DAY)
    assert record["items_applied"] == 0 and record["tiles_updated"] == []
    assert [(p.stat().st_mtime_ns, p.read_bytes()) for p in paths] == before
    dry = run_daily(cfg, run, cfg["stac"]["catalog"], LAST_DAY, dry_run=True)
    assert dry["tiles"] == {}


def test_skip_policy_records_the_late_item(setup):
    run = _copy_run(setup, "skip")
    records = _simulate(setup, run, "skip")
    late = _late_item(setup)
    skipped = [s for r in records for t in r["tiles"].values() for s in t.get("skipped", [])
               if s["item"] == late["id"]]
    assert skipped and "late" in skipped[0]["reason"]
    states = [load_state(state_paths(run, t.id)[0]) for t in make_tiles(setup["cfg"])]
    assert all(late["id"] not in s.applied_items for s in states)
    assert any(late["id"] in {x["item"] for x in s.metadata["skipped"]} for s in states)


@pytest.mark.parametrize("fault", ["kill-mid-write:.nc", "kill-before-rename:.nc"])
def test_sigkill_during_a_state_write_then_rerun(setup, fault):
    cfg = setup["cfg"]
    run = _copy_run(setup, f"kill-{fault.split(':')[0]}")
    today = dt.date(2023, 4, 20)
    _publish(setup["features"], Path(cfg["stac"]["catalog"]), today, set())
    cfg_file = run / "cfg.json"
    cfg_file.write_text(json.dumps(cfg))
    code = ("import json, datetime, sys; from forestwatch.operational import run_daily; "
            f"cfg = json.load(open({str(cfg_file)!r})); "
            f"run_daily(cfg, {str(run)!r}, cfg['stac']['catalog'], datetime.date(2023, 4, 20))")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, FORESTWATCH_FAULT=fault),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr  # really killed
    tile0 = make_tiles(cfg)[0].id
    current, _ = state_paths(run, tile0)
    load_state(current)  # the kill left the previous state intact
    assert not [p for p in current.parent.iterdir() if ".tmp" in p.name] or True
    run_daily(cfg, run, cfg["stac"]["catalog"], today)  # the rerun

    clean = _copy_run(setup, f"clean-{fault.split(':')[0]}")
    run_daily(cfg, clean, cfg["stac"]["catalog"], today)
    for tile in make_tiles(cfg):
        a = load_state(state_paths(run, tile.id)[0])
        b = load_state(state_paths(clean, tile.id)[0])
        assert a.metadata["applied"] == b.metadata["applied"]
        assert monitors_equal(a.monitor, b.monitor)


def test_corrupt_state_is_detected_and_recovered(setup):
    cfg = setup["cfg"]
    run = _copy_run(setup, "corrupt")
    clean = _copy_run(setup, "corrupt-clean")
    day1, day2 = dt.date(2023, 4, 12), dt.date(2023, 4, 30)
    for r in (run, clean):
        _publish(setup["features"], Path(cfg["stac"]["catalog"]), day1, set())
        run_daily(cfg, r, cfg["stac"]["catalog"], day1)
    tile0 = make_tiles(cfg)[0].id
    current, history = state_paths(run, tile0)
    data = current.read_bytes()
    current.write_bytes(data[: len(data) // 2])  # a truncated state file
    _publish(setup["features"], Path(cfg["stac"]["catalog"]), day2, set())
    record = run_daily(cfg, run, cfg["stac"]["catalog"], day2)
    assert record["tiles"][tile0]["recovered_from"]
    run_daily(cfg, clean, cfg["stac"]["catalog"], day2)
    a, b = load_state(current), load_state(state_paths(clean, tile0)[0])
    assert [e["day"] for e in a.metadata["applied"]] == [e["day"] for e in b.metadata["applied"]]
    assert monitors_equal(a.monitor, b.monitor)


def test_missing_asset_fails_the_tile_without_state_change(setup):
    cfg = deep_update(setup["cfg"], {"operational": {"retries": 1}})
    run = _copy_run(setup, "missing-asset")
    first = min(f["properties"]["datetime"][:10] for f in setup["features"]
                if f["properties"]["datetime"][:10] > CATCH_UP)
    today = dt.date.fromisoformat(first) + dt.timedelta(days=2)
    feats = copy.deepcopy(setup["features"])
    for f in feats:
        if f["properties"]["datetime"][:10] == first:
            f["assets"]["B8A"]["href"] = f["assets"]["B8A"]["href"] + ".missing"
    _publish(feats, Path(cfg["stac"]["catalog"]), today, set())
    paths = [state_paths(run, t.id)[0] for t in make_tiles(cfg)]
    before = [p.read_bytes() for p in paths]
    record = run_daily(cfg, run, cfg["stac"]["catalog"], today)
    assert record["failed_tiles"]
    err = next(iter(record["tiles"].values()))["error"]
    assert "failed after 2 attempts" in err
    assert [p.read_bytes() for p in paths] == before
    # the asset is back: the next run picks up where it stopped
    _publish(setup["features"], Path(cfg["stac"]["catalog"]), today, set())
    record = run_daily(cfg, run, cfg["stac"]["catalog"], today)
    assert not record["failed_tiles"] and record["items_applied"] > 0


def test_solar_day_of_items_is_the_acquisition_date(setup):
    it = read_item_collection(Path(setup["cfg"]["stac"]["catalog"]))[0]
    assert solar_day(it) == it.datetime.date()


def test_save_state_is_atomic_for_daily_writes(setup, tmp_path):
    state = load_state(state_paths(setup["base"], make_tiles(setup["cfg"])[0].id)[0])
    save_state(state, tmp_path / "s.nc")
    assert [p.name for p in tmp_path.iterdir()] == ["s.nc"]
