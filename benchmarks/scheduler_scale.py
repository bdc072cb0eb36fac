"""Snakemake's job scheduling against the number of ready jobs: a daily run's shape with
jobs that do nothing, so that what grows is the scheduling, not the work.

A daily run has every tile's update ready at once, then each tile's report, then the
joins. Here: ``update`` per tile (a log and a benchmark file, as the workflow's
``update_tile``), ``report`` per tile (a log), one ``summary`` over all reports; every job
writes a few bytes in a thread of the Snakemake process, under the project's workflow
profile (profiles/default: jobs in threads, the greedy selector without input sizes) and
``start_of_run`` (the scheduler patches of ``forestwatch._scheduling``). Each run is a
fresh process in an empty folder, timed with its CPU and peak RSS (``os.wait4``), the two
variants alternating:

* ``forestwatch``: as the workflow runs;
* ``snakemake``: ``FORESTWATCH_SCHEDULER=snakemake``, Snakemake's own selector input and
  remaining jobs (the input sizes are measured once in both).

    python benchmarks/scheduler_scale.py                         # 500 to 4,000 tiles
    python benchmarks/scheduler_scale.py --tiles 1000 --rounds 3

Results are printed as a Markdown table; BENCHMARKS.md keeps the last ones written down.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from dag_scale import timed_usage  # noqa: E402  (one way to time a child process)

SNAKEFILE = """\
import sys

sys.path.insert(0, {src!r})
from forestwatch.workflow import end_of_run, start_of_run

start_of_run()
TILES = [f"t{{i:05d}}" for i in range(int(config["ntiles"]))]


rule all:
    input:
        "out/summary.txt",


rule update:
    output:
        "out/state/{{tile}}.txt",
    log:
        "out/logs/update/{{tile}}.log",
    benchmark:
        "out/benchmarks/update/{{tile}}.tsv"
    run:
        Path(output[0]).write_text("state")


rule report:
    input:
        "out/state/{{tile}}.txt",
    output:
        "out/report/{{tile}}.txt",
    log:
        "out/logs/report/{{tile}}.log",
    run:
        Path(output[0]).write_text("report")


rule summary:
    input:
        expand("out/report/{{tile}}.txt", tile=TILES),
    output:
        "out/summary.txt",
    run:
        Path(output[0]).write_text(str(len(input)))


onsuccess:
    end_of_run()
"""


def run(snakefile: Path, workdir: Path, tiles: int, variant: str) -> dict:
    """One run of ``tiles`` tiles in an empty ``workdir``: wall and CPU seconds, peak RSS
    (MiB), jobs finished."""
    env = {k: v for k, v in os.environ.items() if k != "FORESTWATCH_SCHEDULER"}
    if variant == "snakemake":
        env["FORESTWATCH_SCHEDULER"] = "snakemake"
    workdir.mkdir(parents=True)
    wall, usage, out = timed_usage(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir),
         "--workflow-profile", str(REPO / "profiles" / "default"), "--cores", "2",
         "--config", f"ntiles={tiles}"], workdir, env)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss": usage.ru_maxrss / 1024, "jobs": out.count("Finished jobid")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs of each variant per tile count, alternating")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="fw-scheduler-") as tmp:
        snakefile = Path(tmp) / "Snakefile"
        snakefile.write_text(SNAKEFILE.format(src=str(REPO / "src")))
        for tiles in args.tiles:
            for r in range(args.rounds):
                order = ("forestwatch", "snakemake")[::1 if (r + len(rows)) % 2 == 0 else -1]
                for variant in order:
                    got = run(snakefile, Path(tmp) / f"{tiles}-{variant}-{r}", tiles, variant)
                    rows.append((tiles, variant, got))
                    print(f"{tiles} tiles, {variant}: {got['wall']:.1f} s, {got['jobs']} "
                          f"jobs", flush=True)

    print(f"\n{time.strftime('%Y-%m-%d')}, 2 cores; jobs that write a few bytes, "
          "the daily run's shape\n")
    print("| tiles | jobs | variant | wall s | ms per job | CPU s | peak RSS MiB |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for tiles, variant, got in sorted(rows, key=lambda row: (row[0], row[1])):
        print(f"| {tiles:,} | {got['jobs']:,} | {variant} | {got['wall']:.1f} | "
              f"{1000 * got['wall'] / got['jobs']:.1f} | {got['cpu']:.1f} | "
              f"{got['rss']:.0f} |")


if __name__ == "__main__":
    main()
