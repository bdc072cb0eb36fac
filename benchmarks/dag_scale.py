"""How the workflow scales with the number of tiles: ``snakemake -n`` time and memory for
100, 1,000 and 10,000 tiles, and the fixed cost every (cluster) job pays.

The configs only build the DAG: a bbox in EPSG:3035 covering ``cols x rows`` tiles of
30 x 30 px, ``stac.source: stac_api`` with a URL that is never contacted (no archive job,
no accuracy job), so the plan is 2 jobs per tile (tile_state: forest mask, fit and
fast-forward; tile_report) plus tiles, tile_reports_index, mosaic, alert_polygons,
alert_statistics, the publishing rules and all. Each measurement is a fresh process, timed
with its peak RSS (``os.wait4``). Per tile count: the whole plan; one tile's chain (what
the Snakemake inside each cluster job plans before running); the dry-run once every
output exists (empty stand-ins), i.e. checking that nothing is pending; and, on those, the
plan of a daily run in which every tile has a new acquisition (``update_tile`` and
``tile_report`` per tile, then the index and the joins), as ``forestwatch daily`` starts
it (the tile records and ``all`` as targets).

    python benchmarks/dag_scale.py                     # 100, 1,000, 10,000 tiles
    python benchmarks/dag_scale.py --tiles 100 1000    # a subset
    python benchmarks/dag_scale.py --profile 10000     # cProfile of one dry-run, top 25
    python benchmarks/dag_scale.py --tiles 10000 --with profiles/slurm   # as submitted to SLURM

Results are printed as Markdown tables; BENCHMARKS.md keeps the last ones written down.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TILE_M = 600  # 30 px at 20 m
ORIGIN = (6_667 * TILE_M, 5_000 * TILE_M)  # EPSG:3035 metres, on tile corners


def scale_config(n_tiles: int) -> dict:
    """A config whose AOI covers ``n_tiles`` tiles (a near-square block of cols x rows)."""
    cols = math.ceil(math.sqrt(n_tiles))
    rows = math.ceil(n_tiles / cols)
    if cols * rows != n_tiles:  # keep the count exact: one short last row is fine too
        cols, rows = n_tiles, 1
        for c in range(math.isqrt(n_tiles), 0, -1):
            if n_tiles % c == 0:
                cols, rows = n_tiles // c, c
                break
    x0, y0 = ORIGIN
    return {
        "run_name": f"scale{n_tiles}",
        # 1 m inside the outer edges: touching a neighbour's edge does not count
        "aoi": {"bbox": [x0 + 1, y0 + 1, x0 + cols * TILE_M - 1, y0 + rows * TILE_M - 1],
                "crs": "EPSG:3035"},
        "grid": {"crs": "EPSG:3035", "resolution": 20, "tile_size": TILE_M,
                 "origin": [0, 0]},
        "stac": {"source": "stac_api", "url": "http://127.0.0.1:9/never-contacted",
                 "preset": "earth-search"},
    }


def timed_usage(cmd: list[str], cwd: Path,
                env: dict | None = None) -> tuple[float, resource.struct_rusage, str]:
    """Run ``cmd``; return (wall s, its resource usage from ``os.wait4``, combined output).
    Fails on a non-zero exit."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out[-3000:]}")
    return wall, usage, out


def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall s, peak RSS MiB, combined output). Fails on a non-zero exit."""
    wall, usage, out = timed_usage(cmd, cwd, env)
    return wall, usage.ru_maxrss / 1024, out


def snakemake_cmd(workdir: Path, cfg_file: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            "--configfile", str(REPO / "config" / "config.yaml"), str(cfg_file), "--cores", "2",
            *args]


def write_config(work: Path, n_tiles: int) -> Path:
    path = work / f"scale{n_tiles}.yaml"
    path.write_text(yaml.safe_dump(scale_config(n_tiles)))
    return path


def fake_outputs(workdir: Path, run: str, tiles: list[str]) -> None:
    """Empty files in place of every output, oldest first along the chain, as after a
    completed run (Snakemake then only checks them: the daily "anything pending?" case)."""
    from forestwatch.alerts.layers import ALERT_REPORT_LAYERS
    from forestwatch.layout import RunLayout
    from forestwatch.publish.layers import published

    run_layout = RunLayout(workdir / "results" / run)
    layers = ["mask", "detection_date", *ALERT_REPORT_LAYERS]
    stages = [[run_layout.tiles()],
              [run_layout.forest_mask(t) for t in tiles]
              + [run_layout.fitted_state(t) for t in tiles],
              [run_layout.current_state(t) for t in tiles],
              [run_layout.report(t, layer) for t in tiles for layer in layers]
              + [run_layout.alert_pieces(t) for t in tiles],
              [run_layout.reports_index()],
              [run_layout.mosaic(layer) for layer in layers]
              + [run_layout.alert_polygons(), run_layout.alert_area("tile")]]
    # what rules/publish.smk makes from them
    shown = published([*layers, "alert_polygons"])
    rasters = [e.name for e in shown if e.kind != "polygons"]
    stages.append(
        [run_layout.wms_mapfile(), run_layout.stac_catalog(), run_layout.alert_polygons_style(),
         *(run_layout.mosaic_style(e.name) for e in shown if e.kind != "polygons"),
         *(run_layout.stac_item(t) for t in [*tiles, "mosaic"]),
         *(run_layout.figure(f"quicklook_{name}") for name in rasters),
         run_layout.figure("alerts_per_month"), run_layout.figure_table("alerts_per_month"),
         run_layout.figure("run_history")])
    stamp = time.time() - len(stages)
    for i, paths in enumerate(stages):
        for name in paths:
            path = Path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, (stamp + i, stamp + i))


def write_daily_run(workdir: Path, run_name: str, tiles: list[str]) -> tuple[str, list[str]]:
    """A daily run's discovery in which every tile has work (and an empty items file):
    what `forestwatch daily` writes before it starts Snakemake. Returns the run id and the
    targets `forestwatch daily` gives Snakemake (every tile record of the run, relative
    to ``workdir``)."""
    from forestwatch.daily.discovery import Discovery
    from forestwatch.io import write_json
    from forestwatch.layout import RunLayout

    run = "20260601T000000000000_2026-06-01"
    layout = RunLayout(Path("results") / run_name)
    disc = Discovery(run=run, today="2026-06-01", window=["2026-05-02", "2026-06-01"],
                     items_found=1, tiles={t: {"items": ["S2X_NEW"], "unknown": 1,
                                               "state": "current"} for t in tiles})
    write_json(workdir / layout.discovery(run), disc.to_dict())
    write_json(workdir / layout.discovered_items(run),
               {"type": "FeatureCollection", "features": []})
    return run, [layout.tile_record(run, t) for t in tiles]


def job_count(output: str) -> int:
    for line in output.splitlines():
        if line.strip().startswith("total"):
            return int(line.split()[1])
    raise ValueError("no job count in the dry-run output")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--profile", type=int, metavar="N", help="cProfile one dry-run of N tiles")
    ap.add_argument("--with", dest="smk_profile", metavar="PROFILE",
                    help="also pass --profile PROFILE to snakemake (e.g. profiles/slurm)")
    args = ap.parse_args()
    extra = ("--profile", str(Path(args.smk_profile).resolve())) if args.smk_profile else ()
    sys.path.insert(0, str(REPO / "src"))
    from forestwatch.config import validate_config
    from forestwatch.grid import make_tiles

    work = Path(tempfile.mkdtemp(prefix="forestwatch-dag-"))

    if args.profile:
        cfg = write_config(work, args.profile)
        stats = work / "dryrun.prof"
        cmd = snakemake_cmd(work, cfg, "-n", "--quiet", *extra)
        cmd[1:3] = ["-m", "cProfile", "-o", str(stats), "-m", "snakemake"]
        timed(cmd, work)
        import pstats

        pstats.Stats(str(stats)).sort_stats("cumulative").print_stats(25)
        pstats.Stats(str(stats)).sort_stats("tottime").print_stats(25)
        return

    # the fixed cost of starting Python + Snakemake and parsing the workflow, and of one
    # job as a cluster job runs it (a fresh interpreter importing the package)
    cfg = write_config(work, 1)
    t_version, _, _ = timed([sys.executable, "-m", "snakemake", "--version"], work)
    t_imports, rss_imports, _ = timed(
        [sys.executable, "-c", "import forestwatch.steps, nrt.monitor.iqr, xarray"], work)

    rows = []
    for n in args.tiles:
        cfg = write_config(work, n)
        wall, rss, out = timed(snakemake_cmd(work / f"w{n}", cfg, "-n", "--quiet", "rules", *extra),
                               work)
        # what the Snakemake inside every cluster job does before running its jobs: parse
        # the workflow (config, all N tiles) and plan one tile's chain
        tiles = [t.id for t in make_tiles(validate_config(scale_config(n)))]
        target = f"results/scale{n}/reports/{tiles[0]}"
        one, _, _ = timed(snakemake_cmd(work / f"w{n}", cfg, target, "-n", "--quiet", "rules",
                                        *extra), work)
        # and once everything exists: the check that nothing is pending
        fake_outputs(work / f"w{n}", f"scale{n}", tiles)
        done, _, out_done = timed(snakemake_cmd(work / f"w{n}", cfg, "-n", "--quiet", "rules",
                                                *extra), work)
        assert "Nothing to be done" in out_done, out_done[-2000:]
        # a daily run in which every tile has a new acquisition, planned as `forestwatch
        # daily` plans it: its tile records and `all` as targets, on the outputs above
        run, targets = write_daily_run(work / f"w{n}", f"scale{n}", tiles)
        daily, _, out_daily = timed(snakemake_cmd(
            work / f"w{n}", cfg, "-n", "--quiet", "rules", "--nolock", "--config",
            f"daily_run={run}", *extra, *targets, "all"), work)
        assert job_count(out_daily) == 2 * n + 6, out_daily[-2000:]
        rows.append((n, job_count(out), wall, rss, one, done, daily))
        print(f"{n} tiles: {wall:.1f} s; one tile's chain {one:.1f} s; up to date {done:.1f} s; "
              f"daily run {daily:.1f} s", file=sys.stderr)

    with_profile = f" --profile {args.smk_profile}" if args.smk_profile else ""
    print(f"\n{os.cpu_count()} cores; each row a fresh `snakemake -n --quiet rules"
          f"{with_profile}`\n")
    print("| tiles | jobs | dry-run wall s | peak RSS MiB | ms per job | one tile's chain s "
          "| all outputs present s | daily run, every tile s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = rows[0]
    for n, jobs, wall, rss, one, done, daily in rows:
        per_job = "" if n == base[0] else f"{1000 * (wall - base[2]) / (jobs - base[1]):.2f}"
        print(f"| {n:,} | {jobs:,} | {wall:.1f} | {rss:.0f} | {per_job} | {one:.1f} "
              f"| {done:.1f} | {daily:.1f} |")
    print(f"\nFixed costs: `snakemake --version` {t_version:.1f} s; a job's Python start-up and "
          f"imports (forestwatch, nrt, xarray) {t_imports:.1f} s / {rss_imports:.0f} MiB")


if __name__ == "__main__":
    main()
