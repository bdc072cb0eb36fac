"""The daily command as the container and cron run it (no Docker here): first the
workflow up to fast_forward.until, then `forestwatch daily` for the days after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, small_config

pytestmark = pytest.mark.workflow


def forestwatch(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "forestwatch"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "forestwatch.cli"]
    return subprocess.run(cmd + list(args), cwd=workdir, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> tuple[Path, Path]:
    workdir = tmp_path_factory.mktemp("deployment")
    cfg = small_config(run_name="ops", fast_forward={"until": "2023-03-31"})
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-d", str(workdir), "--configfile", str(cfg_path), "--cores", "2"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, cfg_path


def test_daily_dry_run_then_run_then_nothing(deployment):
    workdir, cfg_path = deployment
    res = workdir / "results" / "ops"
    reports = sorted(res.glob("reports/*/mask.tif"))
    states = sorted(res.glob("state/current/*.nc"))
    assert len(reports) == len(states) == 2
    before = {p: p.stat().st_mtime_ns for p in reports + states}

    dry = forestwatch(workdir, "daily", "--config", str(cfg_path), "--today", "2023-06-30",
                      "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "to apply" in dry.stdout and "X3718_Y2537" in dry.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before  # a dry-run writes nothing

    run = forestwatch(workdir, "daily", "--config", str(cfg_path), "--today", "2023-06-30")
    assert run.returncode == 0, run.stdout + run.stderr
    (record_path,) = res.glob("runs/*_2023-06-30.json")
    record = json.loads(record_path.read_text())
    assert record["items_applied"] > 0 and sorted(record["tiles_updated"]) == [
        "X3718_Y2537", "X3719_Y2537"]
    assert all(p.stat().st_mtime_ns > before[p] for p in reports + states)  # reports refreshed
    assert (res / "logs" / "daily" / "2023-06-30.log").exists()

    again = forestwatch(workdir, "daily", "--config", str(cfg_path), "--today", "2023-06-30")
    assert again.returncode == 0 and "nothing new" in again.stdout
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-d", str(workdir), "--profile", str(REPO / "profiles/operational"),
                           "--configfile", str(cfg_path), "-n"],
                          capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in plan.stdout + plan.stderr


def test_daily_without_states_says_what_to_do(tmp_path):
    cfg = small_config(run_name="empty")
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = forestwatch(tmp_path, "daily", "--config", str(cfg_path), "--today", "2023-06-30")
    assert proc.returncode == 2
    assert "run `snakemake` first" in proc.stderr


def test_bad_config_is_refused_by_the_cli(tmp_path):
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text("monitr: {}\n")
    proc = forestwatch(tmp_path, "daily", "--config", str(cfg_path))
    assert proc.returncode == 2 and "unknown config key(s) 'monitr'" in proc.stderr
