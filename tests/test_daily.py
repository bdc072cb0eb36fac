"""Three months of daily runs on the synthetic archive, published day by day.

A local STAC catalog grows as the days pass: items appear a day after acquisition, one
granule is published two weeks late, one is re-published with a newer processing
baseline a week later, one has a band that answers "not found" for its first days (an
outage), and one has a band that never comes (a broken item). The daily runs (serial
here; the Snakemake executor is compared with it in test_cli.py) must end in the state of
one fast-forward over the final catalog, array for array, with every acquisition applied
exactly once per tile, and no tile must stop being updated. They must survive a SIGKILL
in the middle of a state write and recover from a corrupt state.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from conftest import catalog_events, small_config

from forestwatch import steps
from forestwatch.acquisitions import acquisition_key, solar_day
from forestwatch.config import deep_update, validate_config
from forestwatch.daily import run_daily
from forestwatch.grid import make_tiles
from forestwatch.layout import RunLayout
from forestwatch.stac import read_item_collection
from forestwatch.state import TileStateStore, load_state, monitors_equal

CATCH_UP = "2023-03-31"  # fast_forward.until: the operational days start after it
LAST_DAY = dt.date(2023, 6, 30)
LATE_DAYS = 14  # the late granule appears this long after its acquisition
VERY_LATE_DAYS = 45  # ... and this one long after operational.lookback_days (20)
GRACE = {"grace_days": 3, "grace_runs": 2}


def _day(feature: dict) -> dt.date:
    return dt.date.fromisoformat(feature["properties"]["datetime"][:10])


def _published(feature: dict) -> dt.date:
    return dt.date.fromisoformat(feature["properties"]["published"][:10])


def _publish(features: list[dict], path: Path, today: dt.date) -> None:
    """The catalog as it is on ``today``: every item whose ``published`` day has come."""
    feats = [f for f in features if _published(f) <= today]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


def _break(feature: dict) -> dict:
    broken = copy.deepcopy(feature)
    broken["assets"]["B8A"]["href"] += ".missing"
    return broken


@pytest.fixture(scope="module")
def archive(small_archive, tmp_path_factory):
    """The config, and the catalog's history: the archive's items, each published the day
    after its acquisition, plus the events (late, re-published, outage, broken)."""
    root = tmp_path_factory.mktemp("operation")
    features = [it.to_dict() for it in read_item_collection(small_archive["catalog"])]
    events = catalog_events(features, after=dt.date.fromisoformat(CATCH_UP),
                            late_days=LATE_DAYS, very_late_days=VERY_LATE_DAYS)
    late, very_late, old, new, broken = (events[k] for k in
                                         ("late", "very_late", "old", "new", "broken"))
    outage = events["pick"]("2023-05-0", "32")
    history = [_break(f) if f["id"] == broken["id"] else f for f in features] + [new]
    # the outage: the band answers "not found" for its first days (one daily run sees it)
    outage_ends = _day(outage) + dt.timedelta(days=5)
    (root / "published.json").write_text('{"type": "FeatureCollection", "features": []}')
    cfg = validate_config(deep_update(small_archive["cfg"], {
        "stac": {"catalog": str(root / "published.json")},
        "fast_forward": {"until": CATCH_UP},
        "forest_mask": {"method": "file",
                        "file": {"path": str(small_archive["folder"] / "truth" / "tree_cover.tif")}},
        "operational": {"lookback_days": 20, "retries": 1, "retry_delay_s": 0.01,
                        "keep_states": 10, "unreadable_assets": GRACE},
    }))
    return {"cfg": cfg, "root": root, "history": history, "features": features,
            "late": late, "very_late": very_late, "old": old, "new": new, "outage": outage,
            "outage_ends": outage_ends, "broken": broken}


def catalog_on(archive, today: dt.date) -> list[dict]:
    """The catalog's items on ``today`` (the outage's band is missing until it ends)."""
    return [_break(f) if f["id"] == archive["outage"]["id"] and today < archive["outage_ends"]
            else f for f in archive["history"]]


@pytest.fixture(scope="module")
def base(archive):
    """Every tile masked, fitted and fast-forwarded up to CATCH_UP, as `snakemake` does."""
    cfg = archive["cfg"]
    _publish(catalog_on(archive, dt.date.fromisoformat(CATCH_UP)), Path(cfg["stac"]["catalog"]),
             dt.date.fromisoformat(CATCH_UP))
    layout = RunLayout(archive["root"] / "base")
    for tile in make_tiles(cfg):
        steps.fit(cfg, tile.id, cfg["stac"]["catalog"], mask_cfg=cfg,
                  mask_out=layout.forest_mask(tile.id), out=layout.fitted_state(tile.id),
                  tree_cover=cfg["forest_mask"]["file"]["path"])
        steps.fast_forward(cfg, tile.id, cfg["stac"]["catalog"], layout.root,
                           layout.current_state(tile.id))
    return layout


def _copy_run(archive, base: RunLayout, name: str) -> RunLayout:
    target = archive["root"] / name
    shutil.copytree(base.root, target)
    return RunLayout(target)


def _days():
    d = dt.date.fromisoformat(CATCH_UP) + dt.timedelta(days=1)
    while d < LAST_DAY:
        yield d
        d += dt.timedelta(days=3)
    yield LAST_DAY


def _simulate(archive, layout: RunLayout, **operational) -> list[dict]:
    cfg = deep_update(archive["cfg"], {"operational": operational})
    records = []
    for today in _days():
        _publish(catalog_on(archive, today), Path(cfg["stac"]["catalog"]), today)
        records.append(run_daily(cfg, today=today, catalog=cfg["stac"]["catalog"],
                                 run_dir=layout.root, executor="serial", reports=False))
    return records


def _reference(archive, base: RunLayout, name: str = "reference") -> RunLayout:
    """One fast-forward from the fitted states over the final catalog, skipping the
    broken band (as the workflow does with stac.on_unreadable_asset: skip)."""
    layout = RunLayout(archive["root"] / name)
    if Path(layout.root).exists():
        return layout
    cfg = deep_update(archive["cfg"], {
        "fast_forward": {"until": str(LAST_DAY)},
        "stac": {"catalog": str(archive["root"] / "final.json")}})
    _publish(catalog_on(archive, LAST_DAY), Path(cfg["stac"]["catalog"]), LAST_DAY)
    for tile in make_tiles(cfg):
        Path(layout.fitted_state(tile.id)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(base.fitted_state(tile.id), layout.fitted_state(tile.id))
        steps.fast_forward(cfg, tile.id, cfg["stac"]["catalog"], layout.root,
                           layout.current_state(tile.id))
    return layout


@pytest.fixture(scope="module")
def replayed(archive, base):
    layout = _copy_run(archive, base, "replay")
    return layout, _simulate(archive, layout)


def _ledger_view(state):
    return [(e.day, e.items, e.acquisitions, e.valid_pixels) for e in state.ledger.applied]


def test_daily_runs_end_in_the_state_of_one_fast_forward(archive, base, replayed):
    layout, records = replayed
    reference = _reference(archive, base)
    assert sum(r["items_applied"] for r in records) > 0
    for tile in make_tiles(archive["cfg"]):
        daily = load_state(layout.current_state(tile.id))
        ref = load_state(reference.current_state(tile.id))
        assert _ledger_view(daily) == _ledger_view(ref)
        assert monitors_equal(daily.monitor, ref.monitor)
        assert (daily.monitor.mask == 3).any()  # the comparison covers detections
        # every acquisition once, and only its newest version
        keys = [k for e in daily.ledger.applied for k in e.acquisitions]
        assert len(keys) == len(set(keys)) and keys
        assert not daily.ledger.applied_item_ids & {archive["old"]["id"]}
        # no tile stopped: it reached the last acquisition of the final catalog
        last = max(solar_day(it) for it in read_item_collection(archive["root"] / "final.json")
                   if it.id in daily.ledger.applied_item_ids | ref.ledger.applied_item_ids)
        assert daily.ledger.last_day == last


def test_late_granule_is_replayed_once_per_tile(archive, replayed):
    _, records = replayed
    late = archive["late"]["id"]
    replays = [(r["today"], t) for r in records for t, rec in r["tiles"].items()
               if any(x["item"] == late for x in rec.get("replay_for", []))]
    assert replays, "the late granule never triggered a replay"
    assert min(r for r, _ in replays) == str(_published(archive["late"]))
    first_applied = Counter(t for r in records for t, rec in r["tiles"].items()
                            if late in rec.get("applied_items", []))
    assert first_applied and set(first_applied.values()) == {1}


def test_an_acquisition_published_after_the_lookback_is_found_and_applied(archive, replayed):
    """Discovery's second search, on operational.published_property, finds an acquisition
    that the window (lookback_days) has long passed; it is replayed in once per tile."""
    _, records = replayed
    item = archive["very_late"]["id"]
    published = _published(archive["very_late"])
    assert published - _day(archive["very_late"]) > dt.timedelta(days=20 + 3)
    replays = [r["today"] for r in records for rec in r["tiles"].values()
               if any(x["item"] == item for x in rec.get("replay_for", []))]
    assert replays and min(replays) == str(min(d for d in _days() if d >= published))
    applied = Counter(t for r in records for t, rec in r["tiles"].items()
                      if item in rec.get("applied_items", []))
    assert applied and set(applied.values()) == {1}


def test_discovery_by_publication_time_can_be_switched_off(archive, replayed):
    """A granule re-published today for a day months back: found by publication time,
    not by the window (published_property: null). Dry runs: nothing is written."""
    layout, _ = replayed
    cfg = archive["cfg"]
    old = next(f for f in archive["history"] if f["properties"]["datetime"].startswith("2023-04-0")
               and "_N0400_" in f["id"])
    new = copy.deepcopy(old)
    new["id"] = new["id"].replace("_N0400_", "_N0511_")
    new["properties"]["s2:processing_baseline"] = "05.11"
    new["properties"]["published"] = f"{LAST_DAY}T06:00:00Z"
    _publish(catalog_on(archive, LAST_DAY) + [new], Path(cfg["stac"]["catalog"]), LAST_DAY)
    try:
        found = run_daily(cfg, today=LAST_DAY, catalog=cfg["stac"]["catalog"],
                          run_dir=layout.root, dry_run=True)
        off = deep_update(cfg, {"operational": {"published_property": None}})
        missed = run_daily(off, today=LAST_DAY, catalog=cfg["stac"]["catalog"],
                           run_dir=layout.root, dry_run=True)
    finally:
        _publish(catalog_on(archive, LAST_DAY), Path(cfg["stac"]["catalog"]), LAST_DAY)
    assert missed["tiles_with_work"] == 0
    assert found["tiles_with_work"] > 0
    assert all(any(x["item"] == new["id"] for x in rec.get("replay_for", []))
               for rec in found["tiles"].values())


def test_reprocessed_granule_replaces_the_applied_version(archive, replayed):
    layout, records = replayed
    old, new = archive["old"]["id"], archive["new"]["id"]
    for tile in make_tiles(archive["cfg"]):
        state = load_state(layout.current_state(tile.id))
        if new in state.ledger.applied_item_ids:
            assert old not in state.ledger.applied_item_ids
            entry = next(e for e in state.ledger.applied if new in e.items)
            assert entry.versions[entry.items.index(new)].startswith("05.10|")
    assert any(x["item"] == new and "reprocessed version of applied " + old in x["reason"]
               for r in records for rec in r["tiles"].values() for x in rec.get("replay_for", []))


def test_an_outage_is_waited_out(archive, replayed):
    """The outage's band fails its first runs: the tile stops before that day (exit status
    3, the days before it applied), then applies it, and the later days, once it is back."""
    _, records = replayed
    outage, ends = archive["outage"], archive["outage_ends"]
    waiting = [r for r in records if any(x["item"] == outage["id"] for rec in r["tiles"].values()
                                         for x in rec.get("waiting_for", []))]
    assert waiting and all(r["exit_status"] == 3 for r in waiting)
    assert all(r["today"] < str(ends) for r in waiting)
    assert all(rec["waiting_since"] == str(solar_day(read_item_collection_one(outage)))
               for r in waiting for rec in r["tiles"].values() if rec.get("waiting_since"))
    # never given up: applied whole once readable
    assert not [a for r in records for a in r["assets_skipped"] if a["item"] == outage["id"]]


def read_item_collection_one(feature: dict):
    import pystac

    return pystac.Item.from_dict(feature)


def test_a_broken_item_is_given_up_after_its_grace_period(archive, replayed):
    """The broken band never comes: after GRACE the day is applied without it, recorded in
    the state, the run record and the exit status (3), and the tile goes on."""
    layout, records = replayed
    broken = archive["broken"]
    given_up = [(r["today"], a) for r in records for a in r["assets_skipped"]
                if a["item"] == broken["id"]]
    assert given_up
    first_failed = min(r["today"] for r in records
                       for rec in r["tiles"].values() for x in rec.get("waiting_for", [])
                       if x["item"] == broken["id"])
    waited = (dt.date.fromisoformat(given_up[0][0]) - dt.date.fromisoformat(first_failed)).days
    assert waited >= GRACE["grace_days"]
    assert all(a["asset"] == "B8A" and "given up" in a["reason"] for _, a in given_up)
    assert {r["exit_status"] for r in records if r["today"] == given_up[0][0]} == {3}
    for tile in make_tiles(archive["cfg"]):
        store = TileStateStore(layout, tile.id)
        state, _ = store.load_current()
        entries = [e for e in state.ledger.applied if broken["id"] in e.items]
        if entries:
            (entry,) = entries
            assert [u["asset"] for u in entry.unreadable] == ["B8A"]
            assert state.ledger.last_day > dt.date.fromisoformat(entry.day)  # went on
        assert store.read_register() == {}  # nothing left waiting
    assert records[-1]["exit_status"] == 0 and not records[-1]["waiting_tiles"]


def test_second_run_the_same_day_does_nothing(archive, replayed):
    layout, _ = replayed
    cfg = archive["cfg"]
    paths = [Path(layout.current_state(t.id)) for t in make_tiles(cfg)]
    before = [(p.stat().st_mtime_ns, p.read_bytes()) for p in paths]
    _publish(catalog_on(archive, LAST_DAY), Path(cfg["stac"]["catalog"]), LAST_DAY)
    record = run_daily(cfg, today=LAST_DAY, catalog=cfg["stac"]["catalog"], run_dir=layout.root,
                       executor="serial", reports=False)
    assert record["items_applied"] == 0 and record["tiles_updated"] == []
    assert record["tiles_with_work"] == 0 and record["exit_status"] == 0
    assert [(p.stat().st_mtime_ns, p.read_bytes()) for p in paths] == before
    runs = sorted(Path(layout.runs()).iterdir())
    dry = run_daily(cfg, today=LAST_DAY, catalog=cfg["stac"]["catalog"], run_dir=layout.root,
                    dry_run=True)
    assert dry["tiles"] == {} and sorted(Path(layout.runs()).iterdir()) == runs


def test_old_runs_keep_only_their_record(archive, replayed):
    """Retention: the per-tile files of runs older than operational.keep_runs go, their
    records stay; the states are untouched, and the next run works."""
    layout, records = replayed
    runs = lambda: sorted(p.name for p in Path(layout.runs()).iterdir())  # noqa: E731
    detailed = lambda: [r for r in runs() if Path(layout.discovery(r)).exists()]  # noqa: E731
    assert len(records) > 30 and len(detailed()) == 30  # the default keep_runs
    assert detailed() == runs()[-30:]
    cfg = deep_update(archive["cfg"], {"operational": {"keep_runs": 2}})
    paths = [Path(layout.current_state(t.id)) for t in make_tiles(cfg)]
    before = [p.read_bytes() for p in paths]
    for _ in range(2):
        run_daily(cfg, today=LAST_DAY, catalog=cfg["stac"]["catalog"], run_dir=layout.root,
                  executor="serial", reports=False)
    assert detailed() == runs()[-2:]
    for run in runs():
        assert Path(layout.run_record(run)).exists()
        if run not in detailed():
            assert not any(Path(p).exists() for p in layout.run_details(run))
    assert [p.read_bytes() for p in paths] == before
    # a run whose record is missing (killed, or still running) is never pruned
    Path(layout.run_record(runs()[-1])).unlink()
    run_daily(cfg, today=LAST_DAY, catalog=cfg["stac"]["catalog"], run_dir=layout.root,
              executor="serial", reports=False)
    assert detailed() == runs()[-3:]


def test_skip_policies_record_late_and_reprocessed_items(archive, base):
    layout = _copy_run(archive, base, "skip")
    records = _simulate(archive, layout, late_items="skip", reprocessed_items="skip")
    late, old, new = archive["late"]["id"], archive["old"]["id"], archive["new"]["id"]
    assert not any(rec.get("replayed_from") for r in records for rec in r["tiles"].values())
    skipped = {x["item"]: x["reason"] for r in records for rec in r["tiles"].values()
               for x in rec.get("skipped", [])}
    assert skipped[late].startswith("late:") and "operational.late_items: skip" in skipped[late]
    assert f"reprocessed version of applied {old}" in skipped[new]
    for tile in make_tiles(archive["cfg"]):
        ledger = load_state(layout.current_state(tile.id)).ledger
        assert late not in ledger.applied_item_ids and new not in ledger.applied_item_ids
        if old in ledger.applied_item_ids:
            assert new in ledger.skipped_item_ids


@pytest.mark.parametrize("fault", ["kill-mid-write:.nc", "kill-before-rename:.nc"])
def test_sigkill_during_a_state_write_then_rerun(archive, base, fault):
    cfg = archive["cfg"]
    kind = fault.split(":")[0]
    run = _copy_run(archive, base, f"kill-{kind}")
    today = dt.date(2023, 4, 20)
    _publish(catalog_on(archive, today), Path(cfg["stac"]["catalog"]), today)
    cfg_file = Path(run.root) / "cfg.json"
    cfg_file.write_text(json.dumps(cfg))
    code = ("import json, datetime; from forestwatch.daily import run_daily; "
            f"cfg = json.load(open({str(cfg_file)!r})); "
            f"run_daily(cfg, today=datetime.date(2023, 4, 20), catalog=cfg['stac']['catalog'], "
            f"run_dir={str(run.root)!r}, executor='serial', reports=False)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, FORESTWATCH_FAULT=fault))
    assert proc.returncode == -9, proc.stderr  # really killed
    tile0 = make_tiles(cfg)[0].id
    current = Path(run.current_state(tile0))
    # the kill left the previous state intact
    assert load_state(current).ledger == load_state(base.current_state(tile0)).ledger
    leftovers = [p for p in current.parent.iterdir() if ".tmp" in p.name]
    assert leftovers  # the killed write left its temporary file behind...
    record = run_daily(cfg, today=today, catalog=cfg["stac"]["catalog"], run_dir=run.root,
                       executor="serial", reports=False)
    assert not [p for p in current.parent.iterdir() if ".tmp" in p.name]  # ...the rerun removed it
    assert record["exit_status"] == 0

    clean = _copy_run(archive, base, f"clean-{kind}")
    run_daily(cfg, today=today, catalog=cfg["stac"]["catalog"], run_dir=clean.root,
              executor="serial", reports=False)
    for tile in make_tiles(cfg):
        a = load_state(run.current_state(tile.id))
        b = load_state(clean.current_state(tile.id))
        assert _ledger_view(a) == _ledger_view(b)
        assert monitors_equal(a.monitor, b.monitor)


def test_corrupt_state_is_detected_and_recovered(archive, base):
    cfg = archive["cfg"]
    run, clean = _copy_run(archive, base, "corrupt"), _copy_run(archive, base, "corrupt-clean")
    day1, day2 = dt.date(2023, 4, 12), dt.date(2023, 4, 30)
    for layout in (run, clean):
        _publish(catalog_on(archive, day1), Path(cfg["stac"]["catalog"]), day1)
        run_daily(cfg, today=day1, catalog=cfg["stac"]["catalog"], run_dir=layout.root,
                  executor="serial", reports=False)
    tile0 = make_tiles(cfg)[0].id
    current = Path(run.current_state(tile0))
    data = current.read_bytes()
    current.write_bytes(data[: len(data) // 2])  # a truncated state file
    _publish(catalog_on(archive, day2), Path(cfg["stac"]["catalog"]), day2)
    record = run_daily(cfg, today=day2, catalog=cfg["stac"]["catalog"], run_dir=run.root,
                       executor="serial", reports=False)
    assert record["tiles"][tile0]["recovered_from"]
    run_daily(cfg, today=day2, catalog=cfg["stac"]["catalog"], run_dir=clean.root,
              executor="serial", reports=False)
    a, b = load_state(current), load_state(clean.current_state(tile0))
    assert _ledger_view(a) == _ledger_view(b)
    assert monitors_equal(a.monitor, b.monitor)


def test_every_acquisition_key_is_its_granule_and_time(archive):
    it = read_item_collection_one(archive["features"][0])
    assert acquisition_key(it) == (f"{it.properties['s2:mgrs_tile']}@"
                                   f"{it.datetime:%Y-%m-%dT%H:%M:%S}")


def _advance(archive, layout: RunLayout, today: dt.date, calls: list):
    """advance_tile on the first tile up to ``today`` with the catalog of ``today``, as a
    daily run's update does (its items given), through a loader that records which thread
    read which days."""
    from forestwatch.monitor import UnreadablePolicy, advance_tile
    from forestwatch.stac import load_reflectance

    cfg = archive["cfg"]
    _publish(catalog_on(archive, today), Path(cfg["stac"]["catalog"]), today)
    tile = make_tiles(cfg)[0]
    search = steps.tile_search(cfg, tile, cfg["stac"]["catalog"])

    def loader(items, geobox, bands, stac_cfg, threads=1):
        calls.append((threading.current_thread().name, sorted({solar_day(i) for i in items})))
        return load_reflectance(items, geobox, bands, stac_cfg, threads=threads)

    store = steps.tile_store(cfg, layout.root, tile.id)
    items = search(dt.date.fromisoformat(CATCH_UP), today)
    return store, advance_tile(store, tile, cfg, run=f"run-{today}", until=today,
                               policy=UnreadablePolicy.from_stac(cfg["stac"]), search=search,
                               items=items, loader=loader)


def test_the_new_days_are_read_while_the_state_loads(archive, base):
    """The first batch of new days is read in a thread started before the state is loaded
    (ReadAhead), once, and the state it makes is the state of the same days monitored
    without it (forward_items reads in the caller's thread)."""
    from forestwatch.monitor import forward_items

    cfg = archive["cfg"]
    layout = _copy_run(archive, base, "read-ahead")
    today = dt.date(2023, 4, 20)
    calls: list = []
    store, update = _advance(archive, layout, today, calls)
    assert update.applied_days and not update.recovered_from
    assert len(calls) == 1, calls
    thread, days = calls[0]
    assert thread.startswith("forestwatch-read-ahead"), thread
    assert [str(d) for d in days] == update.applied_days

    tile = make_tiles(cfg)[0]
    reference = load_state(base.current_state(tile.id))
    items = steps.tile_search(cfg, tile, cfg["stac"]["catalog"])(
        dt.date.fromisoformat(CATCH_UP), today)
    forward_items(reference, items, tile, cfg, until=today)
    state = load_state(store.current_path)
    assert _ledger_view(state) == _ledger_view(reference)
    assert monitors_equal(state.monitor, reference.monitor)
    for name, layer in reference.alerts.arrays().items():
        assert np.array_equal(state.alerts.arrays()[name], layer, equal_nan=True), name


def test_a_read_ahead_the_verified_state_does_not_ask_for_is_not_used(archive, base):
    """The read ahead is planned from the current state's attributes, unverified. When
    the state's arrays turn out corrupt (its attributes intact), the tile starts from the
    kept state before it, which needs more days: those are read again in the caller's
    thread and the result is the uncorrupted run's."""
    layout, clean = (_copy_run(archive, base, "ahead-corrupt"),
                     _copy_run(archive, base, "ahead-clean"))
    day1, day2 = dt.date(2023, 4, 12), dt.date(2023, 4, 30)
    for run in (layout, clean):
        _advance(archive, run, day1, [])
    store = steps.tile_store(archive["cfg"], layout.root, make_tiles(archive["cfg"])[0].id)
    with netCDF4.Dataset(store.current_path, "a") as nc:
        nc.variables["mask"][0, 0] = 3 - nc.variables["mask"][0, 0]  # arrays only
    calls: list = []
    _, update = _advance(archive, layout, day2, calls)
    assert update.recovered_from
    (ahead, ahead_days), (again, again_days) = calls
    assert ahead.startswith("forestwatch-read-ahead") and ahead_days[0] > day1
    assert not again.startswith("forestwatch-read-ahead")
    assert again_days[0] <= day1 < again_days[-1]
    clean_store, _ = _advance(archive, clean, day2, [])
    a, b = load_state(store.current_path), load_state(clean_store.current_path)
    assert [d for d, *_ in _ledger_view(a)] == [d for d, *_ in _ledger_view(b)]
    assert monitors_equal(a.monitor, b.monitor)


def test_items_are_assigned_to_the_tiles_their_footprints_meet(small_archive):
    """assign_to_tiles (a tree of the tiles' lon/lat boxes) gives each tile the items whose
    footprint intersects its box, in the items' order: what testing every item against
    every tile gives. The archive's items (granules over the whole area) and 40 items with
    small footprints here and there, over the small config's tiles and over 500 m tiles
    (10 x more); an item far from every tile is in none."""
    import random

    from shapely.geometry import box, mapping, shape

    from forestwatch.daily.discover import assign_to_tiles

    archive = read_item_collection(small_archive["catalog"])
    rng = random.Random(15)
    x0, y0, x1, y1 = shape(archive[0].geometry).bounds
    small = []
    for n in range(40):
        item = archive[n].clone()
        item.id = f"small-{n}"
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        w, h = rng.uniform(0.001, 0.02), rng.uniform(0.001, 0.01)
        item.geometry = mapping(box(x, y, x + w, y + h))
        small.append(item)
    away = archive[0].clone()
    away.id = "far-away"
    away.geometry = mapping(box(x0 + 20, y0, x1 + 20, y1))
    items = [*archive[:5], away, *small, *archive[5:]]
    for tile_size in (None, 500):
        cfg = small_archive["cfg"] if tile_size is None else small_config(
            grid={"tile_size": tile_size})
        tiles = make_tiles(cfg)
        got = assign_to_tiles(items, tiles)
        expected = {t.id: [it.id for it in items if shape(it.geometry).intersects(
            box(*t.bbox_lonlat()))] for t in tiles}
        assert {tid: [it.id for it in found] for tid, found in got.items()} == expected
        met = {i for found in expected.values() for i in found if i.startswith("small-")}
        assert 0 < len(met) < len(small)  # some small footprints meet tiles, some do not
        assert all("far-away" not in found for found in expected.values())
    assert len(tiles) >= 20
