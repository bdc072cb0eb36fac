"""What a consensus costs: one tile fitted and brought forward with one monitor, and with
two (the configured one and a second index, ``consensus.members``), in one process.

Both runs use the workflow's own ``fit_tile`` and ``forward_items`` with a loader that
times its reads, so the table splits each run into reading the bands (odc-stac + GDAL)
and the rest (nrt and the alert ladder). The consensus reads the union of the members'
bands once per block or batch of days; reading them once per member would double the
reads. Ratios come from the same run.

    python benchmarks/consensus_cost.py                       # default config, first tile
    python benchmarks/consensus_cost.py --member NDVI --tile X1486_Y1014
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--tile", default=None)
    parser.add_argument("--member", default="NDMI", help="the second monitor's index")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from forestwatch import steps
    from forestwatch.config import load_config, validate_config
    from forestwatch.forest_mask import read_mask
    from forestwatch.grid import make_tiles, tile_by_id
    from forestwatch.monitor import fit_tile, forward_items, warm_numba_cache
    from forestwatch.stac import load_reflectance, search_items

    cfg = load_config(args.config)
    tile = tile_by_id(cfg, args.tile) if args.tile else make_tiles(cfg)[0]
    catalog = REPO / cfg["synthetic"]["folder"] / "items.json"
    if cfg["stac"]["source"] == "synthetic" and not catalog.exists():
        steps.synthetic_archive(cfg, str(catalog))
    mask_path = REPO / "results" / "bench_consensus" / f"{tile.id}_mask.tif"
    if not mask_path.exists():
        steps.forest_mask(cfg, tile.id, str(catalog), None, mask_path, threads=args.threads)
    mask = read_mask(mask_path, tile)
    start = dt.date.fromisoformat(str(cfg["history"]["start"]))
    end = dt.date.fromisoformat(str(cfg["fast_forward"]["until"]))
    items = search_items(cfg["stac"], tile.bbox_lonlat(), start, end, str(catalog))
    h_end = dt.date.fromisoformat(str(cfg["history"]["end"]))
    history = [it for it in items if it.datetime.date() <= h_end]
    later = [it for it in items if it.datetime.date() > h_end]

    one = copy.deepcopy(cfg)
    two = validate_config({**copy.deepcopy(cfg), "consensus": {"members": [
        {"index": args.member,
         "monitor": {"class": cfg["monitor"]["class"], "params": cfg["monitor"]["params"],
                     "fit": cfg["monitor"]["fit"]}}], "k": 2}})
    for c in (one, two):
        warm_numba_cache(c, args.threads)

    rows = []
    for name, c in (("one monitor", one), (f"two monitors ({cfg['index']} + {args.member})", two)):
        reads = {"s": 0.0, "n": 0}

        def loader(*a, reads=reads, **kw):
            t = time.perf_counter()
            out = load_reflectance(*a, **kw)
            reads["s"] += time.perf_counter() - t
            reads["n"] += 1
            return out

        t0 = time.perf_counter()
        state = fit_tile(tile, history, mask, c, loader=loader, threads=args.threads)
        t_fit = time.perf_counter() - t0
        fit_reads = dict(reads)
        t0 = time.perf_counter()
        forward_items(state, later, tile, c, loader=loader, threads=args.threads)
        t_fwd = time.perf_counter() - t0
        fwd_read = reads["s"] - fit_reads["s"]
        rows.append((name, t_fit, fit_reads["s"], t_fwd, fwd_read, reads["n"],
                     int((state.alerts.status == 3).sum())))

    print(f"\nTile {tile.id}: {tile.shape[0]} x {tile.shape[1]} px, {len(history)} history "
          f"items, {len(later)} later items; {args.threads} threads; "
          f"{dt.datetime.now():%Y-%m-%d}\n")
    print("| run | fit s | of it reading s | forward s | of it reading s | reads | "
          "confirmed px |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]} | "
              f"{r[6]} |")
    base, cons = rows
    total = np.array([base[1] + base[3], cons[1] + cons[3]])
    print(f"\nfit + forward: the consensus takes {total[1] / total[0]:.2f} x one monitor "
          f"({total[1] - total[0]:+.1f} s); reading: {(cons[2] + cons[4]) / (base[2] + base[4]):.2f} x "
          f"(the union of the bands, read once); the rest (nrt + ladder): "
          f"{(total[1] - cons[2] - cons[4]) / max(total[0] - base[2] - base[4], 1e-9):.2f} x")


if __name__ == "__main__":
    main()
