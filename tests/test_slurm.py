"""The workflow through a real single-node SLURM cluster with ``--profile profiles/slurm``.

``tests/services/slurm.sh`` installs Debian's slurm-wlm and munge if missing (root, ~30 s
once), then starts munged, slurmctld and slurmd under a temporary folder, bound to
127.0.0.1; the module's fixture stops them by PID and checks that none is left. The run
must produce the same states and reports as the local run (``workflow_run``), through
SLURM jobs (one for the synthetic archive, one batch for both tiles' 8 jobs), and a job
that fails inside SLURM must fail the run instead of hanging it.

Run only these: ``python -m pytest -m slurm`` (about 3 min); ``-m "not slurm"`` skips them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import REPO, snakemake
from ports import free_port

from forestwatch.layout import RunLayout
from forestwatch.state import load_state, monitors_equal

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

SLURM_SH = REPO / "tests" / "services" / "slurm.sh"
RUN = RunLayout("results/small")  # the small config's run folder, relative to a workdir
TILES = ["X3718_Y2537", "X3719_Y2537"]
# the cluster has no accounting database: poll squeue, soon and often (the profile's 20 s
# first wait is meant for a real cluster's load)
SLURM_ARGS = ("--profile", str(REPO / "profiles" / "slurm"),
              "--slurm-init-seconds-before-status-checks", "3")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory) -> dict:
    """A running single-node SLURM; yields the environment variables that point sbatch,
    squeue and srun at it (and a numba cache shared by the submit host and the jobs)."""
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed and this is not a Debian-like system")
    base = tmp_path_factory.mktemp("slurm")
    ctld_port = free_port()
    slurmd_port = free_port()
    while slurmd_port == ctld_port:
        slurmd_port = free_port()
    ports = {"SLURM_CTLD_PORT": str(ctld_port), "SLURM_SLURMD_PORT": str(slurmd_port)}
    # a test session that itself runs inside a SLURM job must not look like one to the
    # plugin (it would run the jobs in place) nor to our daemons
    scrub = pytest.MonkeyPatch()
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        scrub.delenv(name)
    proc = subprocess.run(["bash", str(SLURM_SH), "start", str(base)], capture_output=True,
                          text=True, env=os.environ | ports, timeout=900)
    pid_files = [base / "slurm" / "slurmd.pid", base / "slurm" / "slurmctld.pid",
                 base / "munge" / "munged.pid"]
    pids = [int(p.read_text()) for p in pid_files if p.exists()]
    try:
        assert proc.returncode == 0, f"SLURM did not start:\n{proc.stdout}\n{proc.stderr}"
        assert len(pids) == 3
        env = {
            "SLURM_CONF": str(base / "slurm" / "slurm.conf"),
            # srun wrapper first: the jobstep plugin strips SLURM_CONF before calling srun
            "PATH": f"{base / 'bin'}:{os.environ['PATH']}",
            "NUMBA_CACHE_DIR": str(base / "numba_cache"),
        }
        yield env
    finally:
        stop = subprocess.run(["bash", str(SLURM_SH), "stop", str(base)], capture_output=True,
                              text=True, timeout=120)
        scrub.undo()
        left = [pid for pid in pids if pid_alive(pid)]
        assert stop.returncode == 0, f"stopping SLURM failed:\n{stop.stdout}\n{stop.stderr}"
        assert not left, f"SLURM daemons still running: {left}"


@pytest.fixture(scope="module")
def slurm_run(slurm_env, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("slurm_workflow")
    proc = snakemake(workdir, *SLURM_ARGS, env=slurm_env)
    return workdir, proc


def slurm_job_ids(output: str) -> list[str]:
    return re.findall(r"submitted with SLURM jobid (\d+)", output)


def test_jobs_ran_as_slurm_jobs_in_one_batch(slurm_run, slurm_env):
    workdir, proc = slurm_run
    out = proc.stdout + proc.stderr
    # the archive, and one batch holding both tiles' state (mask, fit, fast-forward) and report
    assert len(slurm_job_ids(out)) == 2, out
    assert "group_tiles" in out
    # the submit host compiled nrt's kernels once, into the cache the jobs then used
    assert "numba cache warmed" in out
    assert any(Path(slurm_env["NUMBA_CACHE_DIR"]).rglob("*.nbi"))
    for tile in TILES:
        for rule in ("tile_state", "tile_report"):
            text = (workdir / RUN.log(rule, tile)).read_text()
            assert "done in" in text, (rule, tile)
            # inside a batch the SLURM plugin starts one Snakemake per job (`srun`), which
            # runs the job in its own process (no script interpreter after it)
            assert re.search(r"in process \d+", text), (rule, tile)


def test_results_equal_the_local_run(slurm_run, workflow_run):
    workdir, _ = slurm_run
    for tile in TILES:
        for stage in ("fitted", "current"):
            a = load_state(workflow_run / getattr(RUN, f"{stage}_state")(tile))
            b = load_state(workdir / getattr(RUN, f"{stage}_state")(tile))
            assert monitors_equal(a.monitor, b.monitor), (stage, tile)
            assert a.ledger.applied == b.ledger.applied
        for layer in ("mask", "detection_date"):
            with rasterio.open(workflow_run / RUN.report(tile, layer)) as x, \
                    rasterio.open(workdir / RUN.report(tile, layer)) as y:
                assert x.profile == y.profile
                assert np.array_equal(x.read(), y.read()), (tile, layer)
    assert (workdir / RUN.mosaic("mask")).exists()


def test_a_failed_slurm_job_fails_the_run(slurm_run, slurm_env):
    """A job that fails inside SLURM ends the run with an error (no hang, no success)."""
    workdir, _ = slurm_run
    state = workdir / RUN.current_state(TILES[0])
    report = RUN.report_folder(TILES[0])  # the report job's layers (a directory output)
    data = state.read_bytes()
    try:
        state.write_bytes(data[: len(data) // 2])  # the report job cannot load this state
        proc = snakemake(workdir, *SLURM_ARGS, "--forcerun", "tile_report", report,
                         check=False, env=slurm_env)
    finally:
        state.write_bytes(data)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert len(slurm_job_ids(out)) == 1, out
    assert "Error in rule tile_report" in out or "failed" in out.lower(), out


# -- the daily run through SLURM --------------------------------------------------------

@pytest.fixture(scope="module")
def behind(workflow_run, tmp_path_factory) -> tuple[Path, Path]:
    """A deployment whose states stop at 2023-03-31: the local run's masks and fits,
    fast-forwarded (locally) to that day only."""
    import yaml
    from conftest import small_config

    workdir = tmp_path_factory.mktemp("behind")
    (workdir / "resources").symlink_to(workflow_run / "resources")
    for part in ("grid", "forest_mask", "state/fitted"):
        shutil.copytree(workflow_run / RUN.root / part, workdir / RUN.root / part)
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(small_config(fast_forward={"until": "2023-03-31"})))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-d", str(workdir), "--configfile", str(cfg_path), "--cores", "2"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, cfg_path


def _daily(workdir: Path, cfg_path: Path, *args: str, env: dict | None = None):
    cli = [sys.executable, "-m", "forestwatch.cli", "daily", "--config", str(cfg_path),
           "--today", "2023-06-30", *args]
    return subprocess.run(cli, cwd=workdir, capture_output=True, text=True, timeout=900,
                          env=None if env is None else os.environ | env)


def test_daily_run_through_slurm_gives_the_states_of_the_serial_run(behind, slurm_env,
                                                                     tmp_path):
    src, cfg_path = behind
    serial, cluster = tmp_path / "serial", tmp_path / "cluster"
    for target in (serial, cluster):
        shutil.copytree(src, target, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    # the test cluster has no accounting database: poll squeue soon (see SLURM_ARGS)
    profile = tmp_path / "profile"
    shutil.copytree(REPO / "profiles" / "slurm", profile)
    text = (profile / "profile.yaml").read_text()
    (profile / "profile.yaml").write_text(text.replace(
        "slurm-init-seconds-before-status-checks: 20",
        "slurm-init-seconds-before-status-checks: 3"))
    one = _daily(serial, cfg_path, "--serial")
    assert one.returncode == 0, one.stdout + one.stderr
    two = _daily(cluster, cfg_path, "--profile", str(profile), env=slurm_env)
    out = two.stdout + two.stderr
    assert two.returncode == 0, out
    # both tiles' update and report in one batch: one SLURM job
    assert len(slurm_job_ids(out)) == 1 and "group_tiles" in out, out
    assert out.count("rule update_tile:") == 2
    for tile in TILES:
        a = load_state(serial / RUN.current_state(tile))
        b = load_state(cluster / RUN.current_state(tile))
        assert [(e.day, e.items) for e in a.ledger.applied] == \
               [(e.day, e.items) for e in b.ledger.applied]
        assert b.ledger.last_day.isoformat() == "2023-06-30"
        assert monitors_equal(a.monitor, b.monitor)
        for layer in ("mask", "detection_date"):  # refreshed from the new states, alike
            with rasterio.open(serial / RUN.report(tile, layer)) as x, \
                    rasterio.open(cluster / RUN.report(tile, layer)) as y:
                assert np.array_equal(x.read(), y.read())
            report = cluster / RUN.report(tile, layer)
            assert report.stat().st_mtime > (src / RUN.report(tile, layer)).stat().st_mtime
