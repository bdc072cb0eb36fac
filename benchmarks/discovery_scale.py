"""The daily run's discovery for many tiles: the tiles' lon/lat boxes and the assignment of a
day's items to the tiles, against the ways they were computed before (BENCHMARKS.md, "The
daily run's discovery for 10,000 tiles").

The tiles are ``--tiles`` tiles of ``--tile-km`` km in EPSG:3035 (a square block: 10,000
tiles of 10 km cover 1,000 x 1,000 km, a large country); the items are ``--items``
footprints of a Sentinel-2 granule's size (~110 km) spread over the area, as a few days'
search over it finds them. In one process:

1. **boxes, odc-geo**: ``tile.geobox.geographic_extent.boundingbox`` per tile (before);
2. **boxes, lonlat_boxes**: :func:`forestwatch.grid.lonlat_boxes` for all tiles (now);
3. **assignment, every pair**: each item's footprint tested against every tile's box
   (before);
4. **assignment, tree**: :func:`forestwatch.daily.discover.assign_to_tiles` (now).

The results of 1 and 2, and of 3 and 4, are checked equal.

    python benchmarks/discovery_scale.py                  # 10,000 tiles, 200 items
    python benchmarks/discovery_scale.py --tiles 2500 --items 50 --tile-km 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--tile-km", type=float, default=10.0)
    args = ap.parse_args()

    import pystac
    from shapely.geometry import box, mapping, shape

    from forestwatch.config import validate_config
    from forestwatch.daily.discover import assign_to_tiles
    from forestwatch.grid import lonlat_boxes, make_tiles

    side = math.isqrt(args.tiles)
    size = args.tile_km * 1000
    x0, y0 = 4_000_000, 2_600_000
    cfg = validate_config({
        "aoi": {"bbox": [x0 + 1, y0 + 1, x0 + side * size - 1, y0 + side * size - 1],
                "crs": "EPSG:3035"},
        "grid": {"crs": "EPSG:3035", "resolution": 20, "tile_size": size, "origin": [0, 0]}})
    tiles = make_tiles(cfg)

    t0 = time.perf_counter()
    before = [tuple(t.geobox.geographic_extent.boundingbox) for t in tiles]
    odc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    boxes = lonlat_boxes(tiles)
    ours_s = time.perf_counter() - t0
    assert boxes == before, "lonlat_boxes differs from odc-geo"

    west, south = min(b[0] for b in boxes), min(b[1] for b in boxes)
    east, north = max(b[2] for b in boxes), max(b[3] for b in boxes)
    rng = random.Random(0)
    items = []
    for n in range(args.items):
        x, y = rng.uniform(west - 1.5, east), rng.uniform(south - 1.0, north)
        geometry = mapping(box(x, y, x + 1.5, y + 1.0))  # ~110 km at these latitudes
        items.append(pystac.Item(f"item-{n}", geometry, list(shape(geometry).bounds),
                                 dt.datetime(2024, 7, 2, 10, tzinfo=dt.UTC), {}))

    t0 = time.perf_counter()
    outlines = [box(*b) for b in boxes]
    pairs: dict[str, list] = {t.id: [] for t in tiles}
    for it in items:
        footprint = shape(it.geometry)
        for t, outline in zip(tiles, outlines, strict=True):
            if footprint.intersects(outline):
                pairs[t.id].append(it)
    pairs_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tree = assign_to_tiles(items, tiles, boxes=boxes)
    tree_s = time.perf_counter() - t0
    assert ({k: [it.id for it in v] for k, v in tree.items()}
            == {k: [it.id for it in v] for k, v in pairs.items()}), "the assignments differ"
    assigned = sum(map(len, tree.values()))

    print(f"\n{len(tiles)} tiles of {cfg['grid']['tile_size'] / 1000:g} km, {len(items)} "
          f"items ({assigned} tile-item pairs meet)\n")
    print("| step | before s | now s | before / now |")
    print("|---|---:|---:|---:|")
    print(f"| the tiles' lon/lat boxes | {odc_s:.2f} | {ours_s:.3f} | {odc_s / ours_s:.0f} |")
    print(f"| the items' tiles | {pairs_s:.2f} | {tree_s:.3f} | {pairs_s / tree_s:.0f} |")


if __name__ == "__main__":
    main()
