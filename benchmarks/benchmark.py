"""Where the time goes for one tile: per-stage wall time and peak memory, and the I/O floor.

Each stage runs in a fresh Python process, as a Snakemake job would, so its time includes
interpreter start-up and imports, and its peak RSS is its own (``os.wait4``). Ratios are
computed from measurements taken in the same run, so a busy machine shifts them less than
the absolute numbers.

    python benchmarks/benchmark.py                 # default config, first tile
    python benchmarks/benchmark.py --config tests/config/small.yaml --tile X3718_Y2537

Results are printed as a Markdown table; BENCHMARKS.md keeps the last ones we wrote down.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: updates timed for the further-tile row (its median is reported): 9, as the session
#: A/B runs use, since medians of 5 moved by +-15 % between runs (0.23-0.29 s)
WARM_REPEATS = 9


def run_stage(code: str, workdir: Path, call: str = "") -> tuple[float, float, float]:
    """Run ``code`` then ``call`` in a fresh interpreter; return (wall seconds, peak RSS
    MiB, seconds of ``call`` alone: the stage in process, after start-up and imports)."""
    timing = Path(tempfile.mkstemp(prefix="forestwatch-stage-")[1])
    script = (f"{code}\nimport time as _time; _t0 = _time.perf_counter()\n{call}\n"
              f"open({str(timing)!r}, 'w').write(str(_time.perf_counter() - _t0))")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=workdir)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"stage failed ({proc.returncode}):\n{script}")
    in_process = float(timing.read_text())
    timing.unlink()
    return wall, usage.ru_maxrss / 1024, in_process


def io_floor(cfg: dict, tile_id: str, catalog: str) -> dict:
    """Time to read the history's input bytes for the tile, without warping or fitting:
    (a) the whole asset files as bytes, (b) the decoded native-CRS windows over the tile."""
    import rasterio
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    from forestwatch.grid import tile_by_id
    from forestwatch.monitor import needed_bands
    from forestwatch.stac import band_keys, search_items

    tile = tile_by_id(cfg, tile_id)
    items = search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["start"],
                         cfg["history"]["end"], catalog)
    keys = band_keys(cfg["stac"])
    assets = [keys[b] for b in needed_bands(cfg)] + [keys["scl"]]
    hrefs = [it.assets[a].href.removeprefix("file://") for it in items for a in assets]

    t0 = time.perf_counter()
    nbytes = 0
    for h in hrefs:
        with open(h, "rb") as f:
            nbytes += len(f.read())
    t_bytes = time.perf_counter() - t0

    t0 = time.perf_counter()
    pixels = 0
    for it in items:
        for a in assets:
            with rasterio.open(it.assets[a].href) as src:
                b = transform_bounds(tile.crs, src.crs, *tile.bounds)
                win = from_bounds(*b, transform=src.transform).round_offsets().round_lengths()
                pixels += src.read(1, window=win, boundless=True, fill_value=0).size
    t_decode = time.perf_counter() - t0
    return {"items": len(items), "files": len(hrefs), "mib": nbytes / 2**20,
            "read_bytes_s": t_bytes, "read_windows_s": t_decode, "pixels": pixels}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--tile", default=None, help="tile id (default: the first tile)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from forestwatch.config import load_config
    from forestwatch.grid import make_tiles

    cfg = load_config(args.config)
    tile_id = args.tile or make_tiles(cfg)[0].id
    work = Path(tempfile.mkdtemp(prefix="forestwatch-bench-"))
    catalog = REPO / cfg["synthetic"]["folder"] / "items.json"
    cfg_json = json.dumps(cfg)
    rows = []

    if cfg["stac"]["source"] == "synthetic" and not catalog.exists():
        code = (f"import json; from forestwatch import steps; "
                f"steps.synthetic_archive(json.loads({cfg_json!r}), {str(catalog)!r})")
        rows.append(("synthetic archive (whole AOI, once)", *run_stage(code, REPO)))
    if cfg["stac"]["source"] != "synthetic":
        catalog = Path(cfg["stac"]["catalog"]) if cfg["stac"]["catalog"] else None

    from forestwatch.layout import RunLayout

    run = RunLayout(work / "run")
    tree_cover = cfg["forest_mask"]["file"]["path"] if cfg["forest_mask"]["method"] == "file" else None
    mask, fitted, current = (run.forest_mask(tile_id), run.fitted_state(tile_id),
                             run.current_state(tile_id))
    # every stage's process imports what a job imports before its timed call, so that a
    # stage "in process" is its work alone
    imports = "import forestwatch.steps, nrt.monitor.iqr, xarray, rasterio"
    # and sets what forestwatch.workflow.run_job sets before a job (BLAS on the calling
    # thread, freed memory kept for the next allocation)
    prelude = (f"import json; {imports}; from forestwatch import steps; "
               "from forestwatch.workflow import prepare_process; prepare_process(); "
               f"cfg = json.loads({cfg_json!r})")
    stages = [
        ("python start-up + imports", imports, ""),
        ("forest mask alone (rule on history)" if cfg["forest_mask"]["method"] == "rule"
         else "forest mask alone",
         prelude, f"steps.forest_mask(cfg, {tile_id!r}, {str(catalog)!r}, {tree_cover!r}, "
         f"{str(work / 'mask_alone.tif')!r}, threads={args.threads})"),
        ("fit job: forest mask + fit (one read of the history)",
         prelude, f"steps.fit(cfg, {tile_id!r}, {str(catalog)!r}, mask_cfg=cfg, "
         f"mask_out={mask!r}, out={fitted!r}, tree_cover={tree_cover!r}, "
         f"threads={args.threads})"),
        # to a new state file: the job's own output would be kept (made from the same
        # inputs) and the fit not made at all
        ("fit job again, mask kept (the fit alone)",
         prelude, f"steps.fit(cfg, {tile_id!r}, {str(catalog)!r}, mask_cfg=cfg, "
         f"mask_out={mask!r}, out={str(work / 'fitted_again.nc')!r}, "
         f"tree_cover={tree_cover!r}, threads={args.threads})"),
        ("fast forward to fast_forward.until",
         prelude, f"steps.fast_forward(cfg, {tile_id!r}, {str(catalog)!r}, {str(run.root)!r}, "
         f"{current!r}, threads={args.threads})"),
        ("tile report (9 COGs and the alert pieces)",
         prelude + "; from forestwatch.alerts.layers import ALERT_REPORT_LAYERS",
         f"steps.tile_report(cfg, {tile_id!r}, {current!r}, {str(work / 'm.tif')!r}, "
         f"{str(work / 'd.tif')!r}, {{n: {str(work)!r} + f'/{{n}}.tif' "
         "for n in ALERT_REPORT_LAYERS}, "
         f"{str(work / 'pieces.gpkg')!r})"),
    ]
    for name, code, call in stages:
        rows.append((name, *run_stage(code, REPO, call)))

    # the daily case: a state one acquisition behind, updated with that one acquisition by
    # the daily run's update_tile job; the discovery (once per daily run, for every tile,
    # in `forestwatch daily`) is made beforehand
    from forestwatch.state import load_state as _load

    days = [e.day for e in _load(current).ledger.applied]
    if len(days) >= 2:
        behind = json.loads(cfg_json)
        behind["fast_forward"]["until"] = days[-2]
        daily_run = RunLayout(work / "daily")
        Path(daily_run.fitted_state(tile_id)).parent.mkdir(parents=True)
        shutil.copy(fitted, daily_run.fitted_state(tile_id))
        run_stage(prelude.replace(repr(cfg_json), repr(json.dumps(behind))), REPO,
                  f"steps.fast_forward(cfg, {tile_id!r}, {str(catalog)!r}, "
                  f"{str(daily_run.root)!r}, {daily_run.current_state(tile_id)!r}, "
                  f"threads={args.threads})")
        run_id = f"20000101T000000000000_{days[-1]}"
        run_stage(prelude + "; import datetime; from forestwatch.daily.discover import "
                  "discover, write_discovery; from forestwatch.grid import tile_by_id; "
                  "from forestwatch.layout import RunLayout", REPO,
                  f"layout = RunLayout({str(daily_run.root)!r}); "
                  f"disc, items = discover(cfg, layout, [tile_by_id(cfg, {tile_id!r})], "
                  f"run={run_id!r}, today=datetime.date.fromisoformat({days[-1]!r}), "
                  f"catalog={str(catalog)!r}); write_discovery(layout, disc, items)")
        # the same update again in a process that made one already: what each further
        # tile's update_tile job costs in a daily run, whose jobs share Snakemake's process
        # (imports, numba's kernels and lazy imports loaded by the first job)
        warm_run = RunLayout(work / "daily_warm")
        shutil.copytree(daily_run.root, warm_run.root)
        update = (f"r = steps.update_tile(cfg, {tile_id!r}, layout.root, {run_id!r}, "
                  f"{str(catalog)!r}, layout.tile_record({run_id!r}, {tile_id!r})); "
                  "assert len(r['applied_days']) == 1, r")
        daily = (prelude + "; from forestwatch.layout import RunLayout; "
                 f"layout = RunLayout({str(daily_run.root)!r})")
        rows.append(("daily update_tile job: 1 new acquisition", *run_stage(
            daily, REPO, update)))
        # after the first update, its state before (the store's kept copy) is current again
        restore = (f"\nimport glob, os\nkept = glob.glob(os.path.join(layout.root, 'state', "
                   f"'history', {tile_id!r}, '*.nc'))[0]\nshutil.copy(kept, "
                   f"layout.current_state({tile_id!r}))\nshutil.rmtree(os.path.dirname(kept))"
                   f"\nos.remove(layout.tile_record({run_id!r}, {tile_id!r}))")
        # the update is ~1 s on a machine whose timings spread by +-20 %: the median of
        # WARM_REPEATS updates, each from the same state (restored after each)
        median_file = work / "warm_median"
        # (the first call is the process's first update, untimed)
        warm = (prelude + "; import shutil, time; from forestwatch.layout import RunLayout; "
                f"layout = RunLayout({str(warm_run.root)!r})\n"
                "def _once():\n    t0 = time.perf_counter()\n"
                + "".join(f"    {line}\n" for line in update.split("; "))
                + "    t = time.perf_counter() - t0\n"
                + "".join(f"    {line}\n" for line in restore.strip().split("\n"))
                + "    return t\n_once()\n")
        wall, rss, _ = run_stage(
            warm, REPO, f"_ts = sorted(_once() for _ in range({WARM_REPEATS})); "
            f"open({str(median_file)!r}, 'w').write(str(_ts[len(_ts) // 2]))")
        rows.append(("daily update_tile, a further tile in the same process (median of "
                     f"{WARM_REPEATS})", wall, rss, float(median_file.read_text())))

    floor = io_floor(cfg, tile_id, str(catalog))
    startup = next(w for n, w, _, _ in rows if n.startswith("python start-up"))

    from forestwatch.state import load_state

    state = load_state(current)
    n_hist = len(state.ledger.fit.days)
    n_ff = len(state.ledger.applied)
    print(f"\nTile {tile_id}: {state.monitor.mask.shape[0]} x {state.monitor.mask.shape[1]} px, "
          f"{n_hist} history days, {n_ff} fast-forward days, monitor {cfg['monitor']['class']} "
          f"{cfg['monitor']['fit']}, threads {args.threads}, {os.cpu_count()} cores\n")
    print("| stage | wall s | in process s | peak RSS MiB |")
    print("|---|---:|---:|---:|")
    for name, wall, rss, inproc in rows:
        timed = f"{inproc:.2f}" if inproc else ""  # start-up alone: nothing timed
        # the further tile's process made a first update before: its wall time is not one
        shown = "" if name.startswith("daily update_tile, a further") else f"{wall:.1f}"
        print(f"| {name} | {shown} | {timed} | {rss:.0f} |")
    print(f"\nI/O floor for the fit's inputs: {floor['items']} items, {floor['files']} files, "
          f"{floor['mib']:.0f} MiB; reading the bytes {floor['read_bytes_s']:.2f} s; decoding "
          f"the native windows over the tile {floor['read_windows_s']:.1f} s.")
    # the fit alone (its mask kept), as the daily update's yardstick
    fit_wall, fit_in = next((w, i) for n, w, _, i in rows if n.startswith("fit job again"))
    daily = next(((w, i) for n, w, _, i in rows if n.startswith("daily")), None)
    warm = next((i for n, _, _, i in rows if n.startswith("daily update_tile, a further")),
                None)
    if daily is not None:
        print(f"daily update / fit: {100 * daily[0] / fit_wall:.1f} % as a job of its own "
              f"(start-up {100 * startup / daily[0]:.0f} % of it); "
              f"{100 * daily[1] / fit_in:.1f} % in process ({daily[1]:.2f} s / {fit_in:.1f} s); "
              f"{100 * warm / fit_in:.1f} % for a further tile in the same process "
              f"({warm:.2f} s)")
    print(f"fit / I/O floor (decoded windows): {fit_wall / floor['read_windows_s']:.1f}x; "
          f"start-up share of the fit job: {100 * startup / fit_wall:.0f} %")

if __name__ == "__main__":
    main()
