"""A tile's fit loads, block after block: how many decoded source blocks the reader finds
kept, and how long the loads take, by the size of its cache and the direction of its scans.

The fit loads the tile's history once per block of ``monitor.block_size`` pixels, and the
blocks of a tile share most of their source blocks (a granule's 512 px blocks are not
aligned with the tile's). ``forestwatch._assets.DECODED`` keeps decoded source blocks up
to ``FORESTWATCH_DECODED_CACHE_MIB``; successive loads scan the items in alternate
directions so that a load larger than the cache still starts with what the last one left.
For each cache size this runs the tile's block loads twice in fresh caches: scanning in
alternate directions (the reader's behaviour) and always oldest first (what it did
before), and counts the source blocks decoded and found.

    python benchmarks/block_cache.py --config benchmarks/configs/large_tile_2y.yaml

Needs the config's synthetic archive (made by the workflow or benchmarks/benchmark.py).
Local files, no STAC API: the decoding, not the fetching, is measured.
"""

from __future__ import annotations

import argparse
import itertools
import time

from reader import REPO, first_tile_history  # benchmarks/reader.py, beside this script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--cache-mib", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--threads", type=int, default=8, help="reads in flight")
    args = ap.parse_args()
    cfg, tile, items, assets, resampling, slices = first_tile_history(args.config)

    from forestwatch import _assets
    from forestwatch.access import gdal_options
    from forestwatch.monitor.fit import _blocks

    blocks = list(_blocks(tile.shape, cfg["monitor"]["block_size"]))

    class Counting(_assets._DecodedBlocks):
        decoded = found = 0

        def block(self, key):
            block = super().block(key)
            Counting.found += block is not None
            return block

        def put_block(self, key, block):
            Counting.decoded += 1
            super().put_block(key, block)

    print(f"tile {tile.id}: {tile.shape[0]} x {tile.shape[1]} px, {len(blocks)} blocks of "
          f"{cfg['monitor']['block_size']} px, {len(items)} items x {len(assets)} assets, "
          f"{args.threads} reads in flight\n")
    print("| cache MiB | scans | source blocks decoded | found kept | loads s | "
          "per block s |")
    print("|---:|---|---:|---:|---:|---|")
    for mib in args.cache_mib:
        for scans, counter in (("alternate", itertools.count()),
                               ("oldest first", itertools.repeat(0))):
            _assets.DECODED = Counting(mib)
            _assets._SCANS = counter
            Counting.decoded = Counting.found = 0
            times = []
            for rows, cols in blocks:
                t = time.perf_counter()
                _assets.read_slices(slices, asset_keys=assets, geobox=tile.geobox[rows, cols],
                                    resampling=resampling, gdal_opts=gdal_options(cfg["stac"]),
                                    threads=args.threads)
                times.append(time.perf_counter() - t)
            print(f"| {mib} | {scans} | {Counting.decoded:,} | {Counting.found:,} | "
                  f"{sum(times):.1f} | {', '.join(f'{s:.1f}' for s in times)} |", flush=True)


if __name__ == "__main__":
    main()
