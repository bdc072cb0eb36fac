"""The daily command as the container and cron run it (no Docker here): first the
workflow up to fast_forward.until, then `forestwatch daily` for the days after, its tile
updates as Snakemake jobs. Real processes throughout: two runs at once, a `snakemake`
during a daily run, a daily run killed half-way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, deploy, small_config

from forestwatch.layout import RunLayout
from forestwatch.runlock import EXIT_LOCKED, acquire
from forestwatch.state import TileStateStore, load_state, monitors_equal, read_ledger

pytestmark = pytest.mark.workflow

TILES = ["X3718_Y2537", "X3719_Y2537"]
TODAY = "2023-06-30"


def forestwatch(workdir: Path, *args: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(_cli() + list(args), cwd=workdir, capture_output=True, text=True,
                          timeout=900, **popen)


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "forestwatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "forestwatch.cli"]


def snakemake(workdir: Path, cfg_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-d", str(workdir), "--profile", str(REPO / "profiles/operational"),
                           "--configfile", str(cfg_path), *args],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> tuple[Path, Path]:
    """A deployment folder brought up to 2023-03-31 by `snakemake`; tests copy it."""
    workdir = tmp_path_factory.mktemp("deployment")
    cfg = small_config(run_name="ops", fast_forward={"until": "2023-03-31"},
                       operational={"retry_delay_s": 0.1})
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    deploy(workdir, cfg_path)
    return workdir, cfg_path


def _copy(deployment, tmp_path: Path, name: str) -> tuple[Path, Path]:
    workdir, cfg_path = deployment
    target = tmp_path / name
    shutil.copytree(workdir, target, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return target, target / cfg_path.name


def _layout(workdir: Path) -> RunLayout:
    return RunLayout(workdir / "results" / "ops")


def _record(workdir: Path) -> dict:
    (path,) = sorted(Path(_layout(workdir).runs()).glob(f"*_{TODAY}/record.json"))[-1:]
    return json.loads(path.read_text())


def _ledger(state) -> list:
    return [(e.day, e.items, e.acquisitions, e.valid_pixels) for e in state.ledger.applied]


def _assert_same_states(a: Path, b: Path) -> None:
    for tile in TILES:
        x = load_state(_layout(a).current_state(tile))
        y = load_state(_layout(b).current_state(tile))
        assert _ledger(x) == _ledger(y), tile
        assert monitors_equal(x.monitor, y.monitor), tile


@pytest.fixture(scope="module")
def daily_done(deployment, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """One daily run (per-tile Snakemake jobs) from the deployment up to TODAY."""
    workdir, cfg_path = _copy(deployment, tmp_path_factory.mktemp("daily"), "run")
    proc = forestwatch(workdir, "daily", "--config", str(cfg_path), "--today", TODAY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return workdir, cfg_path, proc


def test_daily_dry_run_writes_nothing(deployment, tmp_path):
    workdir, cfg_path = _copy(deployment, tmp_path, "dry")
    res = _layout(workdir).root
    files = {p: p.stat().st_mtime_ns for p in res.rglob("*") if p.is_file()}
    dry = forestwatch(workdir, "daily", "--config", str(cfg_path), "--today", TODAY,
                      "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "to apply" in dry.stdout and TILES[0] in dry.stdout
    assert {p: p.stat().st_mtime_ns for p in res.rglob("*") if p.is_file()} == files


def test_daily_runs_per_tile_jobs_and_refreshes_their_reports(daily_done, deployment):
    workdir, cfg_path, proc = daily_done
    layout = _layout(workdir)
    out = proc.stdout + proc.stderr
    # each tile's update was its own Snakemake job, then that tile's report
    assert out.count("rule update_tile:") == 2 and out.count("rule tile_report:") == 2
    record = _record(workdir)
    assert record["executor"] == "snakemake" and record["exit_status"] == 0
    assert record["items_applied"] > 0 and sorted(record["tiles_updated"]) == TILES
    for tile in TILES:
        tile_record = json.loads(Path(layout.tile_record(record["run"], tile)).read_text())
        assert tile_record["applied_days"] == record["tiles"][tile]["applied_days"]
        assert tile_record["last_day"] == TODAY
        report = Path(layout.report(tile, "mask"))
        assert report.stat().st_mtime > Path(layout.tile_record(record["run"], tile)).stat().st_mtime
    assert Path(layout.daily_log(record["run"])).exists()
    # the lock file names its last holder; the lock itself went with it
    assert "forestwatch daily --today 2023-06-30" in Path(layout.lock()).read_text()
    acquire(layout.lock(), command="test").release()

    again = forestwatch(workdir, "daily", "--config", str(cfg_path), "--today", TODAY)
    assert again.returncode == 0 and "nothing new" in again.stdout
    plan = snakemake(workdir, cfg_path, "-n")
    assert "Nothing to be done" in plan.stdout + plan.stderr


def test_per_tile_jobs_give_the_states_of_the_serial_run(daily_done, deployment, tmp_path):
    workdir, _, _ = daily_done
    serial, cfg_path = _copy(deployment, tmp_path, "serial")
    proc = forestwatch(serial, "daily", "--config", str(cfg_path), "--today", TODAY,
                       "--serial")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _record(serial)["executor"] == "serial"
    _assert_same_states(workdir, serial)


def test_fast_forward_rerun_never_rewinds_a_state_the_daily_run_moved(daily_done):
    """`snakemake` after fast_forward.until changed: the rule reruns, and the states the
    daily run brought to TODAY stay where they are (no day re-applied, none lost)."""
    workdir, cfg_path, _ = daily_done
    layout = _layout(workdir)
    before = {t: load_state(layout.current_state(t)) for t in TILES}
    proc = snakemake(workdir, cfg_path, "--cores", "2", "--config",
                     "fast_forward={'until': '2023-05-31'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("rule tile_state:") == 2  # it did rerun
    for tile in TILES:
        after = load_state(layout.current_state(tile))
        assert after.ledger.applied == before[tile].ledger.applied
        assert monitors_equal(after.monitor, before[tile].monitor)
        log = Path(layout.log("tile_state", tile)).read_text()
        assert "past fast_forward.until 2023-05-31" in log
        assert "fitted state kept (made from the same config" in log  # not fitted again


def test_a_refit_rebuilds_the_state_as_far_as_it_had_come(daily_done, tmp_path):
    """Changing the monitor refits; the current state is rebuilt from the new fit up to
    the last day the daily runs had reached, not only to fast_forward.until. The new fit's
    arrays differ (another harmonic order), so the old current state, which takes them
    from the fitted state, cannot be loaded any more: its ledger is all the rebuild needs."""
    src, _, _ = daily_done
    workdir = tmp_path / "refit"
    shutil.copytree(src, workdir, ignore=shutil.ignore_patterns("locks"))
    cfg_path = workdir / "config.yaml"
    layout = _layout(workdir)
    old = {t: load_state(layout.current_state(t)) for t in TILES}
    # one tile's current state is also damaged: its kept states, of the old fit, cannot
    # stand in for it, so it is rebuilt from the new fit as far as its newest kept state
    damaged = TILES[1]
    kept_last = read_ledger(TileStateStore(layout, damaged).kept()[0])[0].last_day
    current = Path(layout.current_state(damaged))
    current.write_bytes(current.read_bytes()[:5000])
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["monitor"]["params"]["sensitivity"] = 3.0
    cfg["monitor"]["params"]["harmonic_order"] = old[TILES[0]].monitor.harmonic_order + 1
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(workdir, cfg_path, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for tile in TILES:
        new = load_state(layout.current_state(tile))
        assert new.monitor.beta.shape[0] == old[tile].monitor.beta.shape[0] + 2
        if tile == damaged:
            assert kept_last <= new.ledger.last_day <= old[tile].ledger.last_day
        else:
            assert new.ledger.last_day == old[tile].ledger.last_day  # as far as it had come
            assert [e.day for e in new.ledger.applied] == [e.day
                                                          for e in old[tile].ledger.applied]
        assert new.ledger.fitted_from != old[tile].ledger.fitted_from
        assert new.monitor.sensitivity == 3.0
        assert "rebuilding it from the new fit" in Path(layout.log("tile_state", tile)).read_text()


def _hold_lock(layout: RunLayout) -> subprocess.Popen:
    """Another process holding the run lock, as a daily run would."""
    code = ("import sys, time; from forestwatch.runlock import acquire; "
            f"lock = acquire({str(layout.lock())!r}, command='forestwatch daily --today x'); "
            "print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_daily_runs_at_once_apply_everything_once(deployment, tmp_path):
    workdir, cfg_path = _copy(deployment, tmp_path, "concurrent")
    cmd = _cli() + ["daily", "--config", str(cfg_path), "--today", TODAY]
    procs = [subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, EXIT_LOCKED], outs
    refused = outs[[p.returncode for p in procs].index(EXIT_LOCKED)][1]
    assert "is being updated by forestwatch daily" in refused and "nothing was changed" in refused
    layout = _layout(workdir)
    for tile in TILES:
        items = [i for e in load_state(layout.current_state(tile)).ledger.applied for i in e.items]
        assert len(items) == len(set(items))
    # a run told to wait for the lock runs after the first and finds nothing new
    holder = _hold_lock(layout)
    waiter = subprocess.Popen(cmd + ["--wait", "60"], cwd=workdir, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    assert waiter.poll() is None  # still waiting
    holder.kill()
    holder.wait()
    out, err = waiter.communicate(timeout=300)
    assert waiter.returncode == 0 and "nothing new" in out, out + err
    assert "waiting up to 60 s for the run lock" in err


def test_snakemake_stops_while_a_daily_run_holds_the_lock(daily_done):
    workdir, cfg_path, _ = daily_done
    layout = _layout(workdir)
    holder = _hold_lock(layout)
    try:
        report = RunLayout("results/ops").report(TILES[0], "mask")
        target = RunLayout("results/ops").report_folder(TILES[0])  # workdir-relative
        before = (workdir / report).stat().st_mtime_ns
        dry = snakemake(workdir, cfg_path, "-n", "--forcerun", "tile_report")
        assert dry.returncode == 0  # planning reads only: never locked out
        proc = snakemake(workdir, cfg_path, "--cores", "1", "--forcerun", "tile_report",
                         "--", target)
        assert proc.returncode != 0
        out = proc.stdout + proc.stderr
        assert "is being updated by forestwatch daily --today x" in out, out[-2000:]
        assert (workdir / report).stat().st_mtime_ns == before  # no job ran
    finally:
        holder.kill()
        holder.wait()


def test_a_daily_run_killed_half_way_is_completed_by_the_next(deployment, daily_done, tmp_path):
    """SIGKILL to the whole daily run (the command, its Snakemake and their jobs) as soon
    as the first tile's state is committed; the next run ends in the states of an
    uninterrupted run."""
    workdir, cfg_path = _copy(deployment, tmp_path, "killed")
    layout = _layout(workdir)
    states = [Path(layout.current_state(t)) for t in TILES]
    before = {p: p.stat().st_mtime_ns for p in states}
    proc = subprocess.Popen(_cli() + ["daily", "--config", str(cfg_path), "--today", TODAY],
                            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while not any(p.stat().st_mtime_ns != before[p] for p in states):
        assert proc.poll() is None and time.monotonic() < deadline, "no state was committed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rerun = forestwatch(workdir, "daily", "--config", str(cfg_path), "--today", TODAY)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    _assert_same_states(workdir, daily_done[0])


def test_daily_without_states_says_what_to_do(tmp_path):
    cfg = small_config(run_name="empty")
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = forestwatch(tmp_path, "daily", "--config", str(cfg_path), "--today", TODAY)
    assert proc.returncode == 2
    assert "run `snakemake` first" in proc.stderr


def test_bad_config_is_refused_by_the_cli(tmp_path):
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text("monitr: {}\n")
    proc = forestwatch(tmp_path, "daily", "--config", str(cfg_path))
    assert proc.returncode == 2 and "unknown config key(s) 'monitr'" in proc.stderr
