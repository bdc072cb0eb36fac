"""The reader's per-file GDAL calls through rasterio against its own (``forestwatch._gdal``,
ctypes, without the interpreter lock), in one process, local files.

Two measures, each side by side for the two paths:

1. open, read 128 x 128 px of the first block and close each of the tile's history
   files, with 1, 2 and 8 threads (what a load does per file once the process knows it);
2. ``forestwatch._assets.read_slices`` of the config's first tile's history, as a fit
   load reads it, with nothing kept decoded and the files' infos (a) not yet known, the
   first tile of a process, and (b) known, a later tile or block; the layers must be the
   same bit for bit.

    python benchmarks/gdal_calls.py
    python benchmarks/gdal_calls.py --config benchmarks/configs/large_tile_2y.yaml

Needs the config's synthetic archive (made by the workflow or benchmarks/benchmark.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from reader import first_tile_history  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 8])
    ap.add_argument("--repeat", type=int, default=3, help="runs per measure (median kept)")
    args = ap.parse_args()
    cfg, tile, items, assets, resampling, slices = first_tile_history(args.config)
    import rasterio

    from forestwatch import _assets, _gdal
    from forestwatch.access import gdal_options

    opts = gdal_options(cfg["stac"])
    hrefs = [it.assets[k].href for s in slices for it in s for k in assets]

    def use(path: str) -> None:
        """``path`` = "rasterio" or "direct" for the reader's next calls."""
        os.environ["FORESTWATCH_DIRECT_GDAL"] = "1" if path == "direct" else "0"
        _gdal.library.cache_clear()

    def median(run, repeat=args.repeat) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    window = ((0, 128), (0, 128))  # inside every file's first block: decodes that block

    def by_rasterio(href):
        with rasterio.Env(**opts), rasterio.open(href) as src:
            return src.read(1, window=window)

    def direct(href):
        _gdal.use_options(opts)
        raster = _gdal.Raster(_gdal.gdal_path(href), None)
        try:
            return raster.read(1, window=window)
        finally:
            raster.close()

    use("direct")
    print(f"\nTile {tile.id}: {tile.geobox.shape[0]} x {tile.geobox.shape[1]} px, "
          f"{len(slices)} days, {len(hrefs)} files; {os.cpu_count()} cores\n")
    print("Open, read 128 x 128 px of the first block (decodes the block), close; ms per "
          "file:\n")
    print("| threads | rasterio | forestwatch._gdal | ratio |")
    print("|---:|---:|---:|---:|")
    for threads in args.threads:
        row = []
        for read in (by_rasterio, direct):
            with ThreadPoolExecutor(threads) as pool:
                row.append(median(lambda pool=pool, read=read: list(pool.map(read, hrefs)))
                           / len(hrefs) * 1000)
        print(f"| {threads} | {row[0]:.2f} | {row[1]:.2f} | {row[0] / row[1]:.1f} x |")

    def load(threads):
        return _assets.read_slices(slices, asset_keys=assets, geobox=tile.geobox,
                                   resampling=resampling, gdal_opts=opts, threads=threads)[0]

    print(f"\n`read_slices` of the tile's history, nothing kept decoded; s (median of "
          f"{args.repeat}):\n")
    print("| threads | file infos | rasterio | forestwatch._gdal | ratio |")
    print("|---:|---|---:|---:|---:|")
    layers = {}
    for threads in [t for t in args.threads if t > 1] or args.threads:
        for known in (False, True):
            row = []
            for path in ("rasterio", "direct"):
                use(path)
                _assets.DECODED = _assets._DecodedBlocks(0)  # no block kept

                def run(known=known, path=path, threads=threads):
                    if not known:
                        _assets.DECODED = _assets._DecodedBlocks(0)  # infos forgotten too
                    layers[path] = load(threads)

                if known:
                    load(threads)  # learns the infos
                row.append(median(run))
            same = all(np.array_equal(layers["rasterio"][k], layers["direct"][k]) for k in assets)
            if not same:
                raise SystemExit("the two paths read different layers")
            print(f"| {threads} | {'known' if known else 'not known'} | {row[0]:.2f} | "
                  f"{row[1]:.2f} | {row[0] / row[1]:.2f} x |")
    print("\nThe two paths' layers are equal bit for bit.")


if __name__ == "__main__":
    main()
