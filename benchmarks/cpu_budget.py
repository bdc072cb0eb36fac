"""The CPU the chain's computation takes, against the I/O floor's wall time: how close to
the floor the workflow can get on this machine's cores (issue 15's done-when).

benchmarks/chain.py measures wall times through the test services. This script asks a
narrower question without them: what the tile jobs compute, in CPU seconds, measured on
local files (no HTTP client, no server on the cores), and what that allows. On
``--cores`` cores no schedule runs the tile jobs in less than their CPU seconds divided by
the cores, and Snakemake plans the run (one core) before the first job starts. So

    lower bound of the workflow's wall time = plan + tile jobs' CPU / cores

which is compared with the floor: every asset file the run needs decoded once, whole,
``--io-threads`` threads (chain.py's floor without its searches and HTTP).

Measured, in one run:

1. **floor**: wall and CPU seconds of decoding every needed asset file (the index's bands
   and SCL of every item of the history and monitoring period over the area), once;
2. **plan**: ``snakemake -n`` of the same run (wall and CPU of its process): the start
   that precedes every run's first job;
3. **tile jobs**: a fresh process running each tile's ``tile_state`` (forest mask from
   the tree-cover file, fit, fast-forward) one after the other with 2 threads, as the
   workflow's jobs do in Snakemake's process; wall and CPU seconds per tile, and the
   CPU seconds of the reader threads in GDAL's decoding (``_gdal.Raster.read``) and in
   the sampling onto the tile grid (``_Sampler.fill``). The first tile also pays the
   process's imports and compiled kernels' loading.

    python benchmarks/cpu_budget.py                         # the demo (4 tiles of 3 km)
    python benchmarks/cpu_budget.py --extra benchmarks/configs/large_tile_2y.yaml \\
        benchmarks/configs/chain_large.yaml                   # 1000 x 1000 px, 4 tiles

Prints Markdown tables; BENCHMARKS.md keeps the last one written down.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def _children_cpu_s() -> float:
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ended.ru_utime + ended.ru_stime


def local_config(cfg: dict, catalog: Path, tree_cover: Path) -> dict:
    """``cfg`` reading the local catalog, masks from the tree-cover file (as chain.py's
    workflow, without the services)."""
    run_cfg = copy.deepcopy(cfg)
    run_cfg["run_name"] = "budget"
    run_cfg["stac"].update(source="local", catalog=str(catalog))
    run_cfg["forest_mask"]["method"] = "file"
    run_cfg["forest_mask"]["file"]["path"] = str(tree_cover)
    return run_cfg


def floor(cfg: dict, catalog: Path, threads: int) -> dict:
    """Decode every asset file the run needs once, whole: wall and CPU seconds."""
    import numpy as np
    import rasterio
    from chain import _bands, area

    from forestwatch.stac import search_items

    bbox = area(cfg)["bbox"]
    items = {it.id: it for period in (
        (cfg["history"]["start"], cfg["history"]["end"]),
        (cfg["history"]["end"], cfg["fast_forward"]["until"]))
        for it in search_items(cfg["stac"], bbox, *period, catalog)}
    hrefs = sorted({it.assets[k].href for it in items.values() for k in _bands(cfg).values()})

    def read(href: str) -> int:
        with rasterio.open(href) as src:
            return int(np.asarray(src.read(1)).nbytes)

    c0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        decoded = sum(pool.map(read, hrefs))
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "files": len(hrefs), "decoded_mib": decoded / 2**20}


def plan(cfg: dict, workdir: Path) -> dict:
    """``snakemake -n`` of the run: wall and CPU seconds of its process."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    c0, t0 = _children_cpu_s(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                    "-d", str(workdir), "--configfile", str(workdir / "config.yaml"),
                    "--cores", "2", "-n", "--quiet"], check=True, capture_output=True)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": _children_cpu_s() - c0}


def _tile_jobs_child(config_file: str, out_file: str) -> None:
    """In a fresh process: each tile's ``tile_state`` one after the other, timed."""
    import threading
    from collections import Counter

    cfg = yaml.safe_load(Path(config_file).read_text())
    t_import, c_import = time.perf_counter(), time.process_time()
    from forestwatch import _assets, _gdal, steps
    from forestwatch.grid import make_tiles
    from forestwatch.layout import RunLayout
    from forestwatch.monitor import fit as fit_module

    threads_cpu: Counter = Counter()
    lock = threading.Lock()

    def counted(owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args, **kwargs):
            c = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                with lock:
                    threads_cpu[label] += time.thread_time() - c

        setattr(owner, name, wrapper)

    counted(_gdal.Raster, "read", "decode")
    counted(_assets._Sampler, "fill", "sample")
    counted(_assets, "_read_window", "window")  # decoding included: subtracted below
    # the fit runs in the job's thread and its helpers' threads while no file is read, so
    # the process's CPU over the call is the fit's
    inner_fit = fit_module.fit_monitor

    def fit_monitor(*args, **kwargs):
        c = time.process_time()
        try:
            return inner_fit(*args, **kwargs)
        finally:
            threads_cpu["fit"] += time.process_time() - c

    fit_module.fit_monitor = fit_monitor  # the name the tile's fit calls
    imports = {"wall_s": time.perf_counter() - t_import,
               "cpu_s": time.process_time() - c_import}
    run = RunLayout(Path(tempfile.mkdtemp(prefix="fw-budget-")))
    tree_cover = cfg["forest_mask"]["file"]["path"]
    tiles = []
    for tile in make_tiles(cfg):
        threads_cpu.clear()
        c0, t0 = time.process_time(), time.perf_counter()
        steps.tile_state(fit_cfg=cfg, forward_cfg=cfg, mask_cfg=cfg, tile_id=tile.id,
                         catalog=cfg["stac"]["catalog"], run_dir=run.root,
                         mask_out=run.forest_mask(tile.id), fitted_out=run.fitted_state(tile.id),
                         current_out=run.current_state(tile.id), tree_cover=tree_cover,
                         threads=2)
        tiles.append({"tile": tile.id, "wall_s": time.perf_counter() - t0,
                      "cpu_s": time.process_time() - c0, **{
                          f"{k}_cpu_s": v for k, v in threads_cpu.items()}})
    Path(out_file).write_text(json.dumps({"imports": imports, "tiles": tiles}))


def tile_jobs(cfg: dict, workdir: Path) -> dict:
    """:func:`_tile_jobs_child` in a fresh process (its imports counted in)."""
    config_file, out_file = workdir / "tiles.yaml", workdir / "tiles.json"
    config_file.write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, __file__, "--child", str(config_file), str(out_file)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out_file.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--extra", nargs="*", default=[], help="config files layered on top")
    ap.add_argument("--io-threads", type=int, default=16, help="the floor's threads")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _tile_jobs_child(*args.child)
        return

    from chain import benchmark_archive

    cfg, folder, catalog = benchmark_archive(args.config, args.extra)
    run_cfg = local_config(cfg, catalog, folder / "truth" / "tree_cover.tif")
    base = Path(tempfile.mkdtemp(prefix="fw-budget-"))
    fl = floor(run_cfg, catalog, args.io_threads)
    pl = plan(run_cfg, base / "plan")
    jobs = tile_jobs(run_cfg, base)
    tiles = jobs["tiles"]
    cpu = sum(t["cpu_s"] for t in tiles)
    for t in tiles:
        t["window_cpu_s"] = t.get("window_cpu_s", 0.0) - t.get("decode_cpu_s", 0.0)
    parts = ("decode", "sample", "window", "fit")
    total = {p: sum(t.get(f"{p}_cpu_s", 0.0) for t in tiles) for p in parts}
    bound = pl["wall_s"] + cpu / args.cores
    print(f"\nArea {run_cfg['grid']['tile_size']} m tiles x {len(tiles)}, "
          f"{run_cfg['index']} {run_cfg['monitor']['class']}, local files, "
          f"{args.cores} cores, {time.strftime('%Y-%m-%d')}\n")
    later = tiles[1:] or tiles
    steady = sum(t["cpu_s"] for t in later) / len(later) * len(tiles)
    print("| part | wall s | CPU s | of which decoding | sampling | windows' assembly | fit "
          "| the rest |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| floor: {fl['files']} files decoded once ({fl['decoded_mib']:.0f} MiB) | "
          f"{fl['wall_s']:.2f} | {fl['cpu_s']:.2f} | | | | | |")
    print(f"| plan (`snakemake -n`) | {pl['wall_s']:.2f} | {pl['cpu_s']:.2f} | | | | | |")
    rows = [(f"tile job {t['tile']}" + (" (and the process's imports, kernels)" if n == 0
                                         else ""), t["wall_s"], t["cpu_s"],
             [t.get(f"{p}_cpu_s", 0.0) for p in parts]) for n, t in enumerate(tiles)]
    rows.append(("tile jobs, all", sum(t["wall_s"] for t in tiles), cpu,
                 [total[p] for p in parts]))
    for name, wall, used, split in rows:
        cells = " | ".join(f"{v:.2f}" for v in split)
        print(f"| {name} | {wall:.2f} | {used:.2f} | {cells} | {used - sum(split):.2f} |")
    print(f"\nThe tile jobs' CPU / the floor's CPU: {cpu / fl['cpu_s']:.2f}; without the "
          f"imports and kernels (each tile at the later tiles' mean): "
          f"{steady / fl['cpu_s']:.2f}")
    print(f"Lower bound of the workflow's wall time on {args.cores} cores: plan "
          f"{pl['wall_s']:.2f} s + tile jobs' CPU {cpu:.2f} s / {args.cores} = {bound:.2f} s"
          f" = {bound / fl['wall_s']:.2f} x this floor ({fl['wall_s']:.2f} s; chain.py's "
          "floor adds the searches and HTTP); without the reports, mosaics, publishing")
    print(f"The same without the imports and kernels: "
          f"{pl['wall_s'] + steady / args.cores:.2f} s")


if __name__ == "__main__":
    main()
