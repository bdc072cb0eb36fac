"""Consensus states: several monitors per tile (``consensus.members``), one alert where at
least ``consensus.k`` of them agree.

On the small synthetic archive, one tile with two members (the configured NBR monitor and
an NDMI one, k = 2) must be exactly the two monitors run one by one, read once for both;
its alert layers must be the members' consensus; the state must survive a save and a load;
daily runs must end in the state of one fast-forward, member for member; and the
consensus must do what it is for on the known truth: fewer false alarms on undisturbed
forest than either member, clear-cuts still detected. The whole workflow (reports,
accuracy, a daily run) runs once with a consensus config.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import deploy, small_config
from rasterio.windows import from_bounds

from forestwatch import steps
from forestwatch.alerts.consensus import break_layers, combine_layers
from forestwatch.alerts.ladder import (
    CONFIRMED,
    FIRST,
    NO_ALERT,
    NO_DATA,
    PROVISIONAL,
    RECOVERED,
    AlertLayers,
)
from forestwatch.config import ConfigError, deep_update, validate_config
from forestwatch.daily import run_daily
from forestwatch.grid import make_tiles
from forestwatch.layout import RunLayout
from forestwatch.monitor import fit_tile, forward_items
from forestwatch.stac import INDEX_BANDS, load_reflectance, read_item_collection
from forestwatch.state import FORMAT_VERSION, load_state, monitors_equal, save_state

EPOCH = dt.date(1970, 1, 1)
# the configured monitor is NBR's (config/config.yaml); the NDMI member takes the test
# config's IQR band (the short archive's, tests/config/small.yaml)
SMALL_BAND = {"trend": False, "harmonic_order": 2, "sensitivity": 2.0, "boundary": 3}
NDMI_MEMBER = {"index": "NDMI", "monitor": {"params": SMALL_BAND}}


# --- configuration --------------------------------------------------------------------


def test_members_are_completed_and_k_defaults_to_all():
    cfg = small_config(consensus={"members": [{"index": "NDMI"}]})
    (member,) = cfg["consensus"]["members"]
    assert cfg["consensus"]["k"] == 2
    assert member["monitor"]["class"] == cfg["monitor"]["class"]
    # a member's parameters left out are the class's measured defaults, as in `monitor`
    assert set(member["monitor"]["params"]) >= {"sensitivity", "harmonic_order", "boundary"}
    assert member["monitor"]["regional_screening"] == cfg["monitor"]["regional_screening"]
    off = small_config(consensus={"members": [{"index": "NDMI",
                                               "monitor": {"regional_screening": None}}]})
    assert off["consensus"]["members"][0]["monitor"]["regional_screening"]["window_m"] is None


@pytest.mark.parametrize("consensus, words", [
    ({"members": [{"index": "NDMI"}], "k": 3}, ["consensus.k", "3", "2 member"]),
    ({"members": [{"index": "NBR", "monitor": {"params": SMALL_BAND}}]},
     ["consensus.members[0]", "same index and monitor"]),
    ({"members": [NDMI_MEMBER, NDMI_MEMBER]}, ["consensus.members[1]", "consensus.members[0]"]),
    ({"members": [{"index": "NBR", "monitor": {"class": "EWMA",
                                               "params": {"sensitivity": -1}}}]},
     ["consensus.members[0]", "sensitivity"]),
    ({"members": [{"index": "NBR", "monitor": {"regional_screening": {"window": 3}}}]},
     ["consensus.members[0]", "window"]),
    ({"members": [{"index": "EVI"}]}, ["consensus", "EVI"]),
])
def test_bad_consensus_configs_are_named(consensus, words):
    with pytest.raises(ConfigError) as err:
        small_config(consensus=consensus)
    for word in words:
        assert word in str(err.value)


# --- the consensus of alert layers, by hand ---------------------------------------------


def _layers(status, first, confirmed, evidence, last):
    n = len(status)
    zeros = {name: np.zeros(n, dtype) for name, dtype in AlertLayers.DTYPES.items()}
    zeros.update(status=np.array(status, np.uint8), first_date=np.array(first, np.int32),
                 confirmed_date=np.array(confirmed, np.int32),
                 evidence=np.array(evidence, AlertLayers.DTYPES["evidence"]),
                 count=np.array([3 if s in (FIRST, PROVISIONAL, CONFIRMED, RECOVERED) else 0
                                 for s in status], AlertLayers.DTYPES["count"]),
                 last_date=np.array(last, np.int32))
    return AlertLayers(**zeros)


def test_combine_layers_by_hand():
    # pixels: both confirmed / one confirmed one provisional / one first, one nothing /
    # both returned to normal / not monitored by either
    a = _layers([CONFIRMED, CONFIRMED, FIRST, RECOVERED, NO_DATA],
                [10, 12, 30, 5, 0], [20, 25, 0, 0, 0], [6, 4, 1, 2, 0], [90, 90, 90, 90, 0])
    b = _layers([CONFIRMED, PROVISIONAL, NO_ALERT, RECOVERED, NO_DATA],
                [14, 15, 0, 8, 0], [22, 0, 0, 0, 0], [3, 2, 0, 1, 0], [95, 85, 95, 95, 0])
    both = combine_layers([a, b], 2)
    assert both.status.tolist() == [CONFIRMED, PROVISIONAL, NO_ALERT, RECOVERED, NO_DATA]
    # dated when the second member joined; as sure as the less sure member
    assert both.first_date.tolist() == [14, 15, 0, 8, 0]
    assert both.confirmed_date.tolist() == [22, 0, 0, 0, 0]
    assert both.evidence.tolist()[:4] == [3, 2, 0, 1]
    assert both.last_date.tolist() == [95, 90, 95, 95, 0]
    either = combine_layers([a, b], 1)
    assert either.status.tolist() == [CONFIRMED, CONFIRMED, FIRST, RECOVERED, NO_DATA]
    assert either.first_date.tolist() == [10, 12, 30, 5, 0]
    assert either.confirmed_date.tolist() == [20, 25, 0, 0, 0]
    assert either.evidence.tolist()[:3] == [6, 4, 1]
    # the break layers the reports and the accuracy read are the consensus's
    mask = np.array([3, 3, 1, 1, 0], np.uint8)
    brk, date = break_layers(mask, both)
    assert brk.tolist() == [3, 1, 1, 1, 0]
    assert date.tolist() == [22, 0, 0, 0, 0]


# --- one tile, in memory ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tile_run(small_archive, tmp_path_factory):
    """The first tile fitted and forwarded with two members (k = 2), and each member alone."""
    root = tmp_path_factory.mktemp("consensus")
    cfg = validate_config(deep_update(small_archive["cfg"], {
        "forest_mask": {"method": "file", "file": {
            "path": str(small_archive["folder"] / "truth" / "tree_cover.tif")}},
        "consensus": {"members": [NDMI_MEMBER], "k": 2}}))
    tile = make_tiles(cfg)[0]
    layout = RunLayout(root)
    steps.forest_mask(cfg, tile.id, None, cfg["forest_mask"]["file"]["path"],
                      layout.forest_mask(tile.id))
    with rasterio.open(layout.forest_mask(tile.id)) as src:
        mask = src.read(1)
    items = list(read_item_collection(small_archive["catalog"]))
    end = dt.date.fromisoformat(cfg["history"]["end"])
    history = [it for it in items if it.datetime.date() <= end]
    monitoring = [it for it in items if it.datetime.date() > end]
    loads = []

    def counting_loader(its, gbox, bands, stac_cfg, **kw):
        loads.append(tuple(bands))
        return load_reflectance(its, gbox, bands, stac_cfg, **kw)

    state = fit_tile(tile, history, mask, cfg, loader=counting_loader)
    fit_loads = list(loads)
    forward_items(state, monitoring, tile, cfg, loader=counting_loader)
    forward_loads = loads[len(fit_loads):]
    singles = []
    for member in ({"index": cfg["index"], "monitor": cfg["monitor"]},
                   {"index": "NDMI", "monitor": cfg["consensus"]["members"][0]["monitor"]}):
        one = copy.deepcopy(cfg)
        one.update(index=member["index"],
                   monitor={**cfg["monitor"], **copy.deepcopy(member["monitor"])},
                   consensus={"members": [], "k": 1})
        single = fit_tile(tile, history, mask, one)
        forward_items(single, monitoring, tile, one)
        singles.append(single)
    return {"cfg": cfg, "tile": tile, "state": state, "singles": singles, "root": root,
            "fit_loads": fit_loads, "forward_loads": forward_loads,
            "truth": small_archive["folder"] / "truth", "monitoring": monitoring}


def test_the_members_are_the_monitors_run_alone_read_once(tile_run):
    state, singles = tile_run["state"], tile_run["singles"]
    assert [m.index for m in state.members] == ["NBR", "NDMI"] and state.agree == 2
    for member, single in zip(state.members, singles, strict=True):
        assert monitors_equal(member.monitor, single.monitor)
        for name, arr in single.alerts.arrays().items():
            np.testing.assert_array_equal(member.alerts.arrays()[name], arr, err_msg=name)
    # one read per block for both members: the fit's one block, and one read per batch
    # of days forward, each with the bands of both indices
    both = set(INDEX_BANDS["NBR"]) | set(INDEX_BANDS["NDMI"])
    assert len(tile_run["fit_loads"]) == 1 and set(tile_run["fit_loads"][0]) == both
    assert tile_run["forward_loads"] and all(set(b) == both for b in tile_run["forward_loads"])
    assert len(state.ledger.applied) > len(tile_run["forward_loads"])
    # the tile's layers are the members' consensus
    expected = combine_layers([m.alerts for m in state.members], 2).arrays()
    for name, arr in state.alerts.arrays().items():
        np.testing.assert_array_equal(arr, expected[name], err_msg=name)


def test_a_consensus_state_survives_save_and_load(tile_run, tmp_path):
    state = tile_run["state"]
    path = tmp_path / "state.nc"
    save_state(state, path)
    back = load_state(path)
    assert FORMAT_VERSION == 5 and back.agree == 2 and back.is_consensus
    assert [m.index for m in back.members] == ["NBR", "NDMI"]
    assert [m.monitor_config for m in back.members] == [m.monitor_config for m in state.members]
    for a, b in zip(state.members, back.members, strict=True):
        assert monitors_equal(a.monitor, b.monitor)
        for name, arr in a.alerts.arrays().items():
            np.testing.assert_array_equal(b.alerts.arrays()[name], arr, err_msg=name)
    for name, arr in state.alerts.arrays().items():
        np.testing.assert_array_equal(back.alerts.arrays()[name], arr, err_msg=name)
    assert back.ledger == state.ledger
    # a one-monitor state is written as before: no member variables, no consensus attribute
    single = tile_run["singles"][0]
    save_state(single, tmp_path / "one.nc")
    with rasterio.Env():
        import netCDF4

        with netCDF4.Dataset(tmp_path / "one.nc") as nc:
            assert "consensus" not in nc.ncattrs()
            assert not [v for v in nc.variables if v.startswith("member")]
    assert not load_state(tmp_path / "one.nc").is_consensus


def test_a_consensus_state_shares_each_members_unchanged_arrays_with_its_fit(tile_run,
                                                                          tmp_path):
    """Committed through the store, each member's arrays that are still the fitted
    state's are read from it, the ones that changed are stored."""
    from forestwatch.state import TileStateStore, shared_with_fit

    layout = RunLayout(tmp_path / "run")
    store = TileStateStore(layout, "X1_Y1")
    store.fitted_path.parent.mkdir(parents=True)
    save_state(tile_run["state"], store.fitted_path)
    state = load_state(store.fitted_path)
    state.members[1].monitor.mask[0, :5] = 3  # the second member confirms a break
    store.commit(state)
    shared = set(shared_with_fit(store.current_path))
    assert {"beta", "member1_beta", "mask"} <= shared and "member1_mask" not in shared
    back = load_state(store.current_path)
    for a, b in zip(state.members, back.members, strict=True):
        assert monitors_equal(a.monitor, b.monitor)


def _truth_on(tile_run, name):
    tile = tile_run["tile"]
    with rasterio.open(tile_run["truth"] / f"{name}.tif") as src:
        window = from_bounds(*tile.bounds, transform=src.transform).round_offsets()
        return src.read(1, window=window.round_lengths(), boundless=True, fill_value=0)


def test_consensus_cuts_false_alarms_and_keeps_clear_cuts(tile_run):
    """Against the truth: where both members must confirm, fewer undisturbed forest pixels
    are flagged than by either member, and clear-cuts are still found on or after their
    date."""
    forest = _truth_on(tile_run, "forest") == 1
    t_day = _truth_on(tile_run, "disturbance_date").astype(np.int64)
    t_type = _truth_on(tile_run, "disturbance_type")
    stable, clear_cut = forest & (t_day == 0), forest & (t_type == 1)
    assert stable.sum() > 500 and clear_cut.sum() > 50

    def confirmed(alerts):
        return alerts.status == CONFIRMED

    def false_alarms(alerts):
        return confirmed(alerts)[stable].mean()

    state, singles = tile_run["state"], tile_run["singles"]
    cons = state.alerts
    assert (confirmed(cons) <= (confirmed(singles[0].alerts) & confirmed(singles[1].alerts))).all()
    fa = [false_alarms(s.alerts) for s in singles]
    assert false_alarms(cons) <= min(fa)
    assert false_alarms(cons) < max(fa)  # it removes some member's false alarms
    detected = confirmed(cons) & (cons.confirmed_date >= t_day)
    assert detected[clear_cut].mean() >= 0.8


# --- daily runs ---------------------------------------------------------------------------


def test_daily_runs_update_every_member_as_one_fast_forward(small_archive, tmp_path):
    """Serial daily runs over a growing catalog end in the state of one fast-forward over
    the final catalog, member for member, each acquisition applied once."""
    catch_up, last = dt.date(2023, 3, 31), dt.date(2023, 5, 20)
    features = [it.to_dict() for it in read_item_collection(small_archive["catalog"])]
    published = tmp_path / "published.json"

    def publish(today):
        feats = [f for f in features
                 if dt.date.fromisoformat(f["properties"]["datetime"][:10]) < today]
        published.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))

    publish(catch_up + dt.timedelta(days=1))
    cfg = validate_config(deep_update(small_archive["cfg"], {
        "stac": {"catalog": str(published)}, "fast_forward": {"until": str(catch_up)},
        "forest_mask": {"method": "file", "file": {
            "path": str(small_archive["folder"] / "truth" / "tree_cover.tif")}},
        "consensus": {"members": [NDMI_MEMBER], "k": 2}}))
    daily, once = RunLayout(tmp_path / "daily"), RunLayout(tmp_path / "once")
    tiles = make_tiles(cfg)
    for tile in tiles:
        steps.fit(cfg, tile.id, str(published), mask_cfg=cfg, mask_out=daily.forest_mask(tile.id),
                  out=daily.fitted_state(tile.id),
                  tree_cover=cfg["forest_mask"]["file"]["path"])
        steps.fast_forward(cfg, tile.id, str(published), daily.root,
                           daily.current_state(tile.id))
        Path(once.fitted_state(tile.id)).parent.mkdir(parents=True, exist_ok=True)
        Path(once.fitted_state(tile.id)).write_bytes(
            Path(daily.fitted_state(tile.id)).read_bytes())
    today = catch_up + dt.timedelta(days=7)
    while today <= last:
        publish(today)
        run_daily(cfg, today=today, catalog=str(published), run_dir=daily.root,
                  executor="serial", reports=False)
        today += dt.timedelta(days=7)
    final = deep_update(cfg, {"fast_forward": {"until": str(today - dt.timedelta(days=8))}})
    for tile in tiles:
        steps.fast_forward(final, tile.id, str(published), once.root,
                           once.current_state(tile.id))
        a, b = load_state(daily.current_state(tile.id)), load_state(once.current_state(tile.id))
        assert a.is_consensus and len(a.members) == 2
        for ma, mb in zip(a.members, b.members, strict=True):
            assert monitors_equal(ma.monitor, mb.monitor), (tile.id, ma.index)
            for name, arr in mb.alerts.arrays().items():
                np.testing.assert_array_equal(ma.alerts.arrays()[name], arr,
                                              err_msg=f"{tile.id} {ma.index} {name}")
        days = [e.day for e in a.ledger.applied]
        assert len(days) == len(set(days)) and days == [e.day for e in b.ledger.applied]
        assert dt.date.fromisoformat(days[-1]) > catch_up


def test_daily_run_refuses_a_state_of_other_members(tile_run, tmp_path):
    """A state fitted with other members than the config's is not brought forward with
    the wrong monitors: the error says to refit."""
    from forestwatch.monitor import UnreadablePolicy, monitor_days

    cfg = copy.deepcopy(tile_run["cfg"])
    cfg["consensus"] = {"members": [], "k": 1}
    state = copy.deepcopy(tile_run["state"])
    with pytest.raises(RuntimeError, match="refit"):
        monitor_days(state, {dt.date(2023, 7, 1): tile_run["monitoring"][:1]},
                     tile_run["tile"], cfg, run="daily",
                     policy=UnreadablePolicy.from_stac(cfg["stac"]))


# --- the workflow -------------------------------------------------------------------------


@pytest.mark.workflow
def test_the_workflow_runs_a_consensus(tmp_path):
    """`snakemake` and `forestwatch daily` with a consensus config: the reports and the
    accuracy summary read the consensus, and changing the members refits."""
    import subprocess
    import sys

    cfg = small_config(run_name="consensus", consensus={"members": [NDMI_MEMBER], "k": 2},
                       fast_forward={"until": "2023-03-31"})
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    deploy(tmp_path, cfg_path)
    layout = RunLayout(tmp_path / "results" / "consensus")
    accuracy = json.loads(Path(layout.accuracy("json")).read_text())
    # at the catch-up (2023-03-31, a cloudy winter after the cuts of late 2022) most
    # clear-cuts are confirmed by both members and every one is at least detected
    assert accuracy["detected_share_clear_cut"] >= 0.5
    assert accuracy["first_detection"]["detected_share"] >= 0.9
    assert accuracy["false_alarm_share"] <= 0.01
    check_reports(cfg, layout)
    # the published catalog says which monitors made the alerts
    for tile in make_tiles(cfg):
        item = json.loads(Path(layout.stac_item(tile.id)).read_text())
        params = item["properties"]["forestwatch:parameters"]
        assert params["index"] == "NBR" and params["consensus"]["k"] == 2
        assert [m["index"] for m in params["consensus"]["members"]] == ["NDMI"]
    proc = subprocess.run([sys.executable, "-m", "forestwatch.cli", "daily", "--config",
                           str(cfg_path), "--today", "2023-04-30"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    states = check_reports(cfg, layout)
    assert all(s.ledger.last_day > dt.date(2023, 4, 1) for s in states)
    # another member refits every tile
    other = deep_update(cfg, {"consensus": {"members": [{"index": "NDVI", "monitor": {
        "params": SMALL_BAND}}]}})
    cfg_path.write_text(yaml.safe_dump(other))
    dry = deploy(tmp_path, cfg_path, "-n", "--quiet", "rules")
    assert "tile_state" in dry.stdout


def check_reports(cfg, layout):
    """Each tile's break and status reports are its state's consensus; the states."""
    states = []
    for tile in make_tiles(cfg):
        state = load_state(layout.current_state(tile.id))
        assert state.is_consensus
        with rasterio.open(layout.report(tile.id, "mask")) as src:
            brk = src.read(1)
        with rasterio.open(layout.report(tile.id, "alert_status")) as src:
            status = src.read(1)
        np.testing.assert_array_equal(brk == 3, state.alerts.status == CONFIRMED)
        np.testing.assert_array_equal(status, state.alerts.status)
        states.append(state)
    return states
