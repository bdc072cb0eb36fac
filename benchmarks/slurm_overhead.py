"""The cost of a SLURM job: the small test config (2 tiles, 8 tile jobs) run through a real
single-node SLURM three ways - every job its own SLURM job, one SLURM job per tile
(its 4 jobs grouped), and both tiles in one batch (``profiles/slurm`` as shipped).

Starts its own cluster with ``tests/services/slurm.sh`` (root; installs slurm-wlm + munge
if missing) under a temporary folder and stops it at the end. The synthetic archive is
generated once, locally, and copied into each run's folder, so only tile jobs are timed.
The numba cache is warm (the submit host warms it before the first job).

    python benchmarks/slurm_overhead.py

Per SLURM job: its elapsed time in SLURM (``scontrol``) minus the time the steps it ran
report in their logs ("done in"): interpreter start-up, imports, and the Snakemake that
runs inside every SLURM job. The wall time of each run adds Snakemake's polling of squeue.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SLURM_SH = REPO / "tests" / "services" / "slurm.sh"
CONFIGS = [str(REPO / "config" / "config.yaml"), str(REPO / "tests" / "config" / "small.yaml")]
sys.path.insert(0, str(REPO / "tests" / "services"))
from ports import free_port  # noqa: E402


def snakemake(workdir: Path, *args: str, env: dict | None = None) -> tuple[float, str]:
    """Run the workflow on the small config; return (wall s, output)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", *CONFIGS, "--cores", "2", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout + proc.stderr


def step_seconds(workdir: Path) -> float:
    """Sum of the steps' own times, from their logs ("done in X s")."""
    total = 0.0
    for log in (workdir / "results" / "small" / "logs").rglob("*.log"):
        if m := re.search(r"done in ([0-9.]+) s", log.read_text()):
            total += float(m.group(1))
    return total


def slurm_elapsed(job_id: str, env: dict) -> float:
    """Elapsed seconds of a finished SLURM job (kept by slurmctld for MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                         env=env, check=True).stdout
    start = re.search(r"StartTime=(\S+)", out).group(1)
    end = re.search(r"EndTime=(\S+)", out).group(1)
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="forestwatch-slurm-bench-"))
    base = work / "cluster"
    ports = {"SLURM_CTLD_PORT": str(free_port()), "SLURM_SLURMD_PORT": str(free_port())}
    subprocess.run(["bash", str(SLURM_SH), "start", str(base)], check=True,
                   env=os.environ | ports)
    env = os.environ | {"SLURM_CONF": str(base / "slurm" / "slurm.conf"),
                        "PATH": f"{base / 'bin'}:{os.environ['PATH']}",
                        "NUMBA_CACHE_DIR": str(work / "numba_cache")}
    # the same profile without its batching, for the per-job baseline
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "profile.yaml").read_text())
    ungrouped = work / "profile_ungrouped"
    ungrouped.mkdir()
    (ungrouped / "profile.yaml").write_text(yaml.safe_dump(
        {k: v for k, v in profile.items() if k not in ("groups", "group-components")}))
    try:
        seed = work / "seed"
        snakemake(seed, "resources/synthetic_small/items.json")
        runs = [
            ("every job its own SLURM job", ["--profile", str(ungrouped)]),
            ("one SLURM job per tile (group)", ["--profile", str(REPO / "profiles" / "slurm"),
                                                "--group-components", "tiles=1"]),
            ("one SLURM job for both tiles (profiles/slurm)",
             ["--profile", str(REPO / "profiles" / "slurm")]),
        ]
        rows = []
        for i, (name, args) in enumerate(runs):
            workdir = work / f"run{i}"
            shutil.copytree(seed / "resources", workdir / "resources", symlinks=True)
            wall, out = snakemake(workdir, *args, "--slurm-init-seconds-before-status-checks",
                                  "3", env=env)
            ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
            in_slurm = sum(slurm_elapsed(j, env) for j in ids)
            steps = step_seconds(workdir)
            rows.append((name, len(ids), wall, in_slurm, steps))
            print(f"{name}: {wall:.0f} s", file=sys.stderr)
    finally:
        subprocess.run(["bash", str(SLURM_SH), "stop", str(base)], check=True)

    print(f"\n{os.cpu_count()} cores; 2 tiles x 4 jobs (mask, fit, fast-forward, report); "
          "archive generated beforehand, numba cache warm\n")
    print("| submission | SLURM jobs | wall s | sum of SLURM job time s | of which steps s | "
          "overhead per SLURM job s | overhead per tile job s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, wall, in_slurm, steps in rows:
        print(f"| {name} | {n} | {wall:.0f} | {in_slurm:.0f} | {steps:.0f} | "
              f"{(in_slurm - steps) / n:.1f} | {(in_slurm - steps) / 8:.1f} |")


if __name__ == "__main__":
    main()
