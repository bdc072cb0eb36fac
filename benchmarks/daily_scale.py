"""The daily run for ~100 tiles: per-tile Snakemake jobs (``--cores 2``) against the serial
run (every tile in one process), and the cost per tile and per new acquisition.

The demo's synthetic archive and AOI, cut into small tiles (``--tile-size`` metres; 500 m =
25 x 25 px gives ~100 tiles), the forest mask from the archive's tree cover. `snakemake`
brings every tile up to ``--until``; then, from copies of that folder, ``forestwatch daily``
runs for "today" = the first, and the sixth, acquisition date after it (1 and 6 new
solar days per tile), once with the default executor and once with ``--serial``. Each
command is timed whole (wall clock, as cron sees it).

    python benchmarks/daily_scale.py                       # ~15 min on 2 cores
    python benchmarks/daily_scale.py --tile-size 1000      # ~30 tiles
    python benchmarks/daily_scale.py --extra benchmarks/configs/large_tile_2y.yaml \
        --tile-size 400 --until 2023-12-31 --days 1 --executors snakemake
                                                           # 2,500 tiles, one new day

``--extra`` layers config files over config/config.yaml (as benchmarks/chain.py does):
another archive (generated if missing) and AOI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile-size", type=float, default=500)
    ap.add_argument("--until", default="2024-06-30")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", help="keep the folders here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the workdir's base folder if it is complete (no new setup)")
    ap.add_argument("--extra", nargs="*", default=[],
                    help="config files layered over config/config.yaml (another archive)")
    ap.add_argument("--days", type=int, nargs="+", default=[1, 6],
                    help="numbers of new acquisition days to run (default: 1 6)")
    ap.add_argument("--executors", nargs="+", default=["snakemake", "serial"],
                    choices=["snakemake", "serial"])
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from chain import benchmark_archive

    from forestwatch.acquisitions import by_solar_day
    from forestwatch.config import deep_update, validate_config
    from forestwatch.grid import make_tiles
    from forestwatch.stac import read_item_collection

    base_cfg, archive, _ = benchmark_archive(str(REPO / "config" / "config.yaml"), args.extra)
    cfg = validate_config(deep_update(base_cfg, {
        "run_name": "daily_scale", "grid": {"tile_size": args.tile_size},
        "synthetic": {"folder": str(archive)},
        "forest_mask": {"method": "file", "file": {"path": str(archive / "truth/tree_cover.tif")}},
        "fast_forward": {"until": args.until}, "accuracy": {"truth_folder": None},
    }))
    tiles = make_tiles(cfg)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="forestwatch-daily-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base"
    base.mkdir(exist_ok=True)
    (base / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                 "--configfile", "config.yaml", "--cores", str(args.cores)]
    print(f"{len(tiles)} tiles of {args.tile_size:.0f} m; bringing them up to {args.until} "
          f"in {base}", flush=True)
    done = len(list((base / "results/daily_scale/state/current").glob("*.nc"))) == len(tiles)
    setup_s = float("nan") if args.reuse and done else run(snakemake, base)

    days = sorted(by_solar_day([it for it in read_item_collection(archive / "items.json")
                                if it.datetime.date() > dt.date.fromisoformat(args.until)]))
    cli = [str(Path(sys.executable).parent / "forestwatch"), "daily", "--config", "config.yaml",
           "--cores", str(args.cores)]
    rows = []
    for n_days in args.days:
        today = days[n_days - 1]
        for executor in args.executors:
            folder = work / f"{executor}-{n_days}"
            if folder.exists():
                shutil.rmtree(folder)
            shutil.copytree(base, folder, symlinks=True, ignore=shutil.ignore_patterns("locks"))
            extra = ["--serial"] if executor == "serial" else []
            wall = run(cli + ["--today", str(today)] + extra, folder)
            (record,) = (folder / "results/daily_scale/runs").glob("*/record.json")
            rec = json.loads(record.read_text())
            rows.append((n_days, executor, wall, rec["tiles_with_work"], rec["items_applied"]))
            print(rows[-1], flush=True)

    print(f"\n{len(tiles)} tiles of {args.tile_size:.0f} m "
          f"({int(args.tile_size / cfg['grid']['resolution'])} px a side), --cores "
          f"{args.cores}; setup (mask, fit, fast-forward, reports) {setup_s:.0f} s\n")
    print("| new days | executor | wall s | tiles | items applied | s per tile | "
          "s per new acquisition |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n_days, executor, wall, n_tiles, n_items in rows:
        print(f"| {n_days} | {executor} | {wall:.1f} | {n_tiles} | {n_items} | "
              f"{wall / max(n_tiles, 1):.2f} | {wall / max(n_items, 1):.2f} |")
    by = {(d, e): w for d, e, w, _, _ in rows}
    for executor in args.executors if {1, 6} <= set(args.days) else ():
        per_day = (by[(6, executor)] - by[(1, executor)]) / 5
        print(f"{executor}: each further day of new acquisitions adds {per_day:.1f} s "
              f"({per_day / len(tiles):.3f} s per tile)")


if __name__ == "__main__":
    main()
