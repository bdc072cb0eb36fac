"""The cost of a tile's forest mask: the tree-cover model (``forest_mask.method: model``)
against the harmonic-intercept rule (``method: rule``), measured in the same run.

Each mask of each tile is made by ``forestwatch.steps.forest_mask`` in a fresh Python
process, as the Snakemake job does, so the wall time includes interpreter start-up and
imports (onnxruntime's for the model) and the peak RSS is the job's own (``os.wait4``).
Each mask's agreement with the synthetic archive's ``truth/forest.tif`` is printed too.
Needs the default archive (``snakemake --cores 2 resources/synthetic/items.json``).

    python benchmarks/model_mask.py [--config config/config.yaml] [--repeat 2]

Prints a Markdown table; BENCHMARKS.md keeps the last one written down.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

JOB = """
import json, logging, warnings
warnings.filterwarnings("ignore")
from forestwatch import steps
logging.basicConfig(level=logging.WARNING)
cfg = json.loads({cfg!r})
steps.forest_mask(cfg, {tile!r}, {catalog!r}, None, {out!r}, threads={threads},
                  model={model!r}, model_description={description!r})
"""


def run_job(code: str) -> tuple[float, float]:
    """Run ``code`` in a fresh interpreter; return (wall seconds, peak RSS MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"mask job failed:\n{code}")
    return wall, usage.ru_maxrss / 1024


def agreement(mask_path: Path, truth_path: Path) -> float:
    """Share of the tile's pixels where the mask equals the truth's forest (0-1)."""
    import rasterio
    from rasterio.windows import from_bounds

    with rasterio.open(mask_path) as m, rasterio.open(truth_path) as t:
        truth = t.read(1, window=from_bounds(*m.bounds, transform=t.transform))
        return float((m.read(1) == truth).mean())


def breakdown(cfg: dict, tile_id: str, catalog: Path, model_path: Path,
              description: Path, threads: int) -> dict[str, float]:
    """Seconds of one tile's model mask, in this process (imports warm): loading the
    period's reflectance, the temporal statistics, onnxruntime's inference."""
    from forestwatch.forest_mask import load_model, mask_from_model
    from forestwatch.forest_mask.model import model_period
    from forestwatch.grid import tile_by_id
    from forestwatch.stac import load_reflectance, search_items

    tile = tile_by_id(cfg, tile_id)
    t0 = time.perf_counter()
    model = load_model(cfg["forest_mask"]["model"], model_path=model_path,
                       description_path=description, stac_cfg=cfg["stac"], threads=threads)
    items = search_items(cfg["stac"], tile.bbox_lonlat(), *model_period(cfg), str(catalog))
    spent = {"model load + search": time.perf_counter() - t0, "load reflectance": 0.0,
             "onnxruntime": 0.0}
    predict = model.predict

    def timed_load(*a, **k):
        t = time.perf_counter()
        out = load_reflectance(*a, **k)
        spent["load reflectance"] += time.perf_counter() - t
        return out

    def timed_predict(features):
        t = time.perf_counter()
        out = predict(features)
        spent["onnxruntime"] += time.perf_counter() - t
        return out

    model.predict = timed_predict
    t0 = time.perf_counter()
    mask_from_model(tile, items, model=model, threshold=20, stac_cfg=cfg["stac"],
                    loader=timed_load, threads=threads)
    total = time.perf_counter() - t0
    spent["temporal statistics"] = total - spent["load reflectance"] - spent["onnxruntime"]
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--repeat", type=int, default=2, help="runs per tile and method")
    ap.add_argument("--threads", type=int, default=2, help="as the rule's threads: 2")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    from forestwatch.config import load_config
    from forestwatch.forest_mask.model import file_sha256, model_files
    from forestwatch.grid import make_tiles

    base = load_config(args.config)
    catalog = REPO / base["synthetic"]["folder"] / "items.json"
    if not catalog.exists():
        raise SystemExit(f"no synthetic archive at {catalog}: run "
                         "`snakemake --cores 2 resources/synthetic/items.json` first.")
    truth = catalog.parent / "truth" / "forest.tif"
    model, description = model_files(base["forest_mask"]["model"], source="synthetic")
    tiles = [t.id for t in make_tiles(base)]
    rows: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("rule", "model"):
            cfg = json.loads(json.dumps(base, default=str))
            cfg["forest_mask"]["method"] = method
            for tile in tiles:
                out = Path(tmp) / f"{method}_{tile}.tif"
                code = JOB.format(cfg=json.dumps(cfg), tile=tile, catalog=str(catalog),
                                  out=str(out), threads=args.threads,
                                  model=str(model) if method == "model" else None,
                                  description=str(description) if method == "model" else None)
                for _ in range(args.repeat):
                    wall, rss = run_job(code)
                    r = rows.setdefault(method, {"wall": [], "rss": [], "agree": []})
                    r["wall"].append(wall)
                    r["rss"].append(rss)
                r["agree"].append(agreement(out, truth))
        startup, _ = run_job("import forestwatch.steps, forestwatch.stac, onnxruntime")

    print(f"{len(tiles)} tiles of {base['grid']['tile_size'] / base['grid']['resolution']:.0f}"
          f" px, {args.repeat} runs each, {args.threads} threads; model "
          f"{model.name} ({model.stat().st_size} bytes, sha256 {file_sha256(model)[:12]})")
    print("\n| mask | wall s per tile (median) | min-max | peak RSS MiB | agrees with "
          "truth/forest.tif |")
    print("|---|---:|---:|---:|---:|")
    names = {"rule": "rule (harmonic intercepts of the 2-year history)",
             "model": "model (ONNX tree cover on the last year's statistics)"}
    for method, r in rows.items():
        print(f"| {names[method]} | {statistics.median(r['wall']):.1f} | "
              f"{min(r['wall']):.1f}-{max(r['wall']):.1f} | {max(r['rss']):.0f} | "
              f"{100 * statistics.mean(r['agree']):.2f} % |")
    ratio = statistics.median(rows["model"]["wall"]) / statistics.median(rows["rule"]["wall"])
    print(f"\nmodel / rule wall time: {ratio:.2f}; python start-up + imports (with "
          f"onnxruntime): {startup:.1f} s")
    cfg = json.loads(json.dumps(base, default=str))
    cfg["forest_mask"]["method"] = "model"
    parts = breakdown(cfg, tiles[0], catalog, model, description, args.threads)
    print(f"\nmodel mask of {tiles[0]} in one warm process: " + ", ".join(
        f"{k} {v:.2f} s" for k, v in parts.items()))


if __name__ == "__main__":
    main()
