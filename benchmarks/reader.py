"""The asset reader against odc-stac: one tile's history read onto the tile grid, the same
items, bands and resampling, with 1, 2 and 8 reads in flight, in one process.

``forestwatch._assets.read_slices`` (what every load of the workflow uses) against
``odc.stac.load`` (what it used before, and what the reference recipe uses), both fusing
the items of a solar day the same way. Also: whether a block of the tile read on its own
equals the same pixels of the whole tile (it must, for block-wise fits to equal whole-tile
fits), and how many values the two readers share.

    python benchmarks/reader.py                      # default config, first tile
    python benchmarks/reader.py --config benchmarks/configs/large_tile.yaml

Needs the config's synthetic archive (made by the workflow or benchmarks/benchmark.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def first_tile_history(config: str) -> tuple:
    """What a fit load of ``config``'s first tile reads, from its synthetic archive:
    ``(cfg, tile, items, asset keys, resampling per asset key, items by solar day)``."""
    sys.path.insert(0, str(REPO / "src"))
    from forestwatch.acquisitions import by_solar_day
    from forestwatch.config import load_config
    from forestwatch.grid import make_tiles
    from forestwatch.monitor import needed_bands
    from forestwatch.stac import band_keys, search_items

    cfg = load_config(config)
    catalog = REPO / cfg["synthetic"]["folder"] / "items.json"
    if not catalog.exists():
        raise SystemExit(f"{catalog} is missing: run the workflow on {config} first")
    tile = make_tiles(cfg)[0]
    items = search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["start"],
                         cfg["history"]["end"], str(catalog))
    keys = band_keys(cfg["stac"])
    assets = [keys[b] for b in needed_bands(cfg)] + [keys["scl"]]
    resampling = {k: cfg["stac"]["resampling"]["reflectance"] for k in assets}
    resampling[keys["scl"]] = cfg["stac"]["resampling"]["scl"]
    return cfg, tile, items, assets, resampling, list(by_solar_day(items).values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--pools", type=int, nargs="+", default=[1, 2, 8])
    args = ap.parse_args()
    cfg, tile, items, assets, resampling, slices = first_tile_history(args.config)
    from reference_recipe import odc_stac  # benchmarks/, this script's folder

    stac_loader = odc_stac()
    import rasterio

    from forestwatch._assets import read_slices
    from forestwatch.access import gdal_options

    slice_of = {it.id: n for n, its in enumerate(slices) for it in its}
    opts = gdal_options(cfg["stac"])

    def ours(geobox, pool):
        return read_slices(slices, asset_keys=assets, geobox=geobox, resampling=resampling,
                           gdal_opts=opts, threads=pool)[0]

    def theirs(geobox, pool):
        with rasterio.Env(**opts):
            ds = stac_loader.load([it for s in slices for it in s], bands=assets, geobox=geobox,
                               groupby=lambda item, parsed, idx: slice_of[item.id],
                               resampling=resampling, pool=pool)
        return {k: ds[k].values for k in assets}

    n_files = sum(len(s) for s in slices) * len(assets)
    print(f"\nTile {tile.id}: {tile.geobox.shape[0]} x {tile.geobox.shape[1]} px, "
          f"{len(items)} items, {len(slices)} days, {n_files} files; {os.cpu_count()} cores\n")
    print("| reads in flight | odc-stac s | forestwatch reader s | ratio |")
    print("|---:|---:|---:|---:|")
    results = {}
    for pool in args.pools:
        t0 = time.perf_counter()
        results["theirs"] = theirs(tile.geobox, pool)
        t1 = time.perf_counter()
        results["ours"] = ours(tile.geobox, pool)
        t2 = time.perf_counter()
        print(f"| {pool} | {t1 - t0:.2f} | {t2 - t1:.2f} | {(t1 - t0) / (t2 - t1):.1f} x |")

    h, w = tile.geobox.shape
    block = tile.geobox[: h // 2, w // 3:]
    same_block = {}
    for name, read in (("odc-stac", theirs), ("forestwatch reader", ours)):
        whole, part = read(tile.geobox, 2), read(block, 2)
        same_block[name] = np.mean([np.mean(whole[k][:, : h // 2, w // 3:] == part[k])
                                    for k in assets])
    shared = np.mean([np.mean(results["theirs"][k] == results["ours"][k]) for k in assets])
    print("\nA block read alone equals the same pixels of the whole tile: "
          + "; ".join(f"{n} {100 * v:.2f} %" for n, v in same_block.items())
          + f". Values shared by the two readers: {100 * shared:.2f} %.")


if __name__ == "__main__":
    main()
