"""Choose the shipped monitoring defaults by measurement: every nrt monitor, a few parameter
sets, on the same tiles and inputs, scored against the synthetic archive's truth.

Inputs are loaded once per tile and shared by all candidates, so the table compares the
monitors, not the loading. Needs the default archive (run `snakemake` once, or this script
generates it).

    python benchmarks/compare_monitors.py [--config config/config.yaml]
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CANDIDATES = {
    "IQR trend=False h=2 s=2 OLS (default)": (
        "IQR", {"trend": False, "harmonic_order": 2, "sensitivity": 2.0, "boundary": 3},
        {"method": "OLS"}),
    "IQR nrt defaults, OLS": ("IQR", {}, {"method": "OLS"}),
    "EWMA nrt defaults (OLS, Shewhart)": ("EWMA", {}, {"method": "OLS"}),
    "EWMA sensitivity=4": ("EWMA", {"sensitivity": 4.0}, {"method": "OLS"}),
    "CuSum nrt defaults (ROC)": ("CuSum", {}, {"method": "ROC"}),
    "MoSum trend=False (ROC)": ("MoSum", {"trend": False}, {"method": "ROC"}),
    "CCDC CCDC-stable, no screening": ("CCDC", {}, {"method": "CCDC-stable",
                                                    "screen_outliers": None}),
    "CCDC sensitivity=2, no screening": ("CCDC", {"sensitivity": 2.0},
                                         {"method": "CCDC-stable", "screen_outliers": None}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)

    from forestwatch import steps
    from forestwatch.accuracy import assess
    from forestwatch.config import load_config
    from forestwatch.forest_mask import mask_from_rule
    from forestwatch.grid import make_tiles
    from forestwatch.monitor import fit_tile, forward_items
    from forestwatch.reports import build_vrt, write_tile_reports
    from forestwatch.stac import load_reflectance, search_items

    cfg = load_config(args.config)
    folder = REPO / cfg["synthetic"]["folder"]
    catalog = folder / "items.json"
    if not catalog.exists():
        steps.synthetic_archive(cfg, catalog)

    cache: dict = {}

    def cached_loader(items, geobox, bands, stac_cfg, threads=1):
        key = (tuple(i.id for i in items), tuple(geobox.boundingbox), tuple(bands))
        if key not in cache:
            cache[key] = load_reflectance(items, geobox, bands, stac_cfg, threads=2)
        return cache[key]

    tiles = make_tiles(cfg)
    inputs = {}
    for tile in tiles:
        hist = search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["start"],
                            cfg["history"]["end"], str(catalog))
        new = search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["end"],
                           cfg["fast_forward"]["until"], str(catalog))
        mask = mask_from_rule(tile, hist, cfg["forest_mask"]["rule"], cfg["stac"],
                              loader=cached_loader)
        inputs[tile.id] = (tile, hist, new, mask)

    print("| monitor | detected | clear-cut | partial | false alarms | median lag d | fit+ff s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (cls, params, fit) in CANDIDATES.items():
        run_cfg = copy.deepcopy(cfg)
        run_cfg["monitor"].update({"class": cls, "params": params, "fit": fit})
        out = Path(tempfile.mkdtemp(prefix="compare-"))
        t0 = time.perf_counter()
        masks, dates = [], []
        for tile, hist, new, mask in inputs.values():
            state = fit_tile(tile, hist, mask, run_cfg, loader=cached_loader, threads=2)
            forward_items(state, new, tile, run_cfg, loader=cached_loader)
            m = state.monitor
            masks.append(out / f"{tile.id}_mask.tif")
            dates.append(out / f"{tile.id}_date.tif")
            write_tile_reports(m.mask, m.detection_date, state.crs, state.transform,
                               masks[-1], dates[-1])
        seconds = time.perf_counter() - t0
        build_vrt(masks, out / "mask.vrt")
        build_vrt(dates, out / "date.vrt")
        r = assess(out / "mask.vrt", out / "date.vrt", folder / "truth",
                   cfg["history"]["end"], cfg["fast_forward"]["until"])

        def pct(v):
            return "n/a" if v is None else f"{100 * v:.1f} %"

        print(f"| {name} | {pct(r['detected_share'])} | {pct(r['detected_share_clear_cut'])} | "
              f"{pct(r['detected_share_partial'])} | {pct(r['false_alarm_share'])} | "
              f"{r['median_lag_days']} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
