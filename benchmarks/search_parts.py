"""A STAC API search cut into parts side by side (``FORESTWATCH_SEARCH_PARTS``) against the same
search in one piece, through the project's real test services.

The archive's items are loaded into PostgreSQL + pgstac behind stac-fastapi-pgstac, and
the searches go through nginx adding ``--latency-ms`` to every request (a timer: no CPU
while it waits). With 0 the API's own time per page is all there is, and that API runs
on the same 2 cores as the client; a provider's server does not, and answers a page in
hundreds of milliseconds (its database, its network): ``--latency-ms 300`` stands for
that. Each round times :func:`forestwatch.stac.search_items` of the history and of the
monitoring period of the config, over the whole area, for every ``--parts`` value in
turn (the order alternating between rounds), and checks that every variant found the
same items.

    python benchmarks/search_parts.py                         # 0 and 300 ms, 3 rounds
    python benchmarks/search_parts.py --latency-ms 0,100,300 --parts 1,2,4,8
    python benchmarks/search_parts.py --extra benchmarks/configs/large_tile_2y.yaml
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests" / "services"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--extra", nargs="*", default=[], help="config files layered on top")
    ap.add_argument("--latency-ms", default="0,300", help="comma-separated, per request")
    ap.add_argument("--parts", default="1,4",
                    help="FORESTWATCH_SEARCH_PARTS values, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import stac_api as services
    from chain import area, benchmark_archive, load_variants

    from forestwatch.stac import search_items

    cfg, folder, catalog = benchmark_archive(args.config, args.extra)
    bbox = area(cfg)["bbox"]
    periods = {"history": (cfg["history"]["start"], cfg["history"]["end"]),
               "monitoring": (cfg["history"]["end"], cfg["fast_forward"]["until"])}
    parts = [int(p) for p in args.parts.split(",")]
    base = Path(tempfile.mkdtemp(prefix="fw-search-parts-"))
    started, db = [], services.PgStac(base)
    times: dict[tuple, list[float]] = {}
    found_ids: dict[str, tuple] = {}  # per period: what the first variant found
    try:
        files, files_url = services.start_nginx_file_server(folder, base)
        started.append(files)
        load_variants(db, catalog, base, {"direct": files_url})
        api, api_url = services.start_stac_api(db, base)
        started.append(api)
        for latency in (float(v) for v in args.latency_ms.split(",")):
            url = api_url
            if latency:
                proxy, url = services.start_latency_proxy(api_url, base, latency,
                                                          f"api-{latency:g}ms")
                started.append(proxy)
            stac_cfg = {**cfg["stac"], "source": "stac_api", "url": url,
                        "collection": "bench-direct"}
            for r in range(args.rounds):
                for n in (parts if r % 2 == 0 else parts[::-1]):
                    os.environ["FORESTWATCH_SEARCH_PARTS"] = str(n)
                    for name, (start, end) in periods.items():
                        t0 = time.perf_counter()
                        found = search_items(stac_cfg, bbox, start, end)
                        times.setdefault((latency, name, n), []).append(
                            time.perf_counter() - t0)
                        ids = tuple(it.id for it in found)
                        if found_ids.setdefault(name, ids) != ids:
                            raise SystemExit(f"{name}: {n} parts found other items")
    finally:
        services.stop_all(started, db)

    print(f"\nSearches over the whole area, {args.rounds} rounds, wall s (mean; each "
          f"round's values)\n")
    print("| added latency per request | period (items) | "
          + " | ".join(f"{n} part{'s' if n > 1 else ''}" for n in parts) + " |")
    print("|---|---|" + "---:|" * len(parts))
    for latency in (float(v) for v in args.latency_ms.split(",")):
        for name in periods:
            cells = [times[(latency, name, n)] for n in parts]
            print(f"| {latency:g} ms | {name} ({len(found_ids[name])}) | " + " | ".join(
                f"{statistics.mean(c):.2f} ({', '.join(f'{v:.2f}' for v in c)})"
                for c in cells) + " |")


if __name__ == "__main__":
    main()
