"""Reads in flight (``FORESTWATCH_IO_THREADS``) against the chain's floor and workflow,
the settings alternating in one set of services (BENCHMARKS.md, "Reads in flight behind
a latency proxy in C").

The services are benchmarks/chain.py's, with nginx as the file server and as the latency
proxy (``--latency-ms`` added to every request, no CPU while it waits). For each round
and each setting, in alternating order: the floor (with that many threads), then the
workflow end to end from an empty folder (with that many reads in flight per load).

    python benchmarks/reads_in_flight.py --values 16,32 --rounds 3
    python benchmarks/reads_in_flight.py --extra benchmarks/configs/large_tile_2y.yaml \\
        benchmarks/configs/chain_large.yaml --variant direct

Prints each run's wall seconds and a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests" / "services"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--extra", nargs="*", default=[], help="config files layered on top")
    ap.add_argument("--values", default="16,32", help="reads in flight to compare")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variant", choices=("direct", "latency"), default="latency")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()

    import chain
    import stac_api as services

    cfg, folder, catalog = chain.benchmark_archive(args.config, args.extra)
    bbox = chain.area(cfg)["bbox"]
    values = args.values.split(",")
    runs: dict[str, dict[str, list[float]]] = {v: {"floor": [], "workflow": []} for v in values}

    base = Path(tempfile.mkdtemp(prefix="fw-reads-"))
    started, db = [], services.PgStac(base)
    try:
        files, files_url = services.start_nginx_file_server(folder, base)
        started.append(files)
        proxy, proxy_url = services.start_latency_proxy(files_url, base, args.latency_ms,
                                                        "files-proxy")
        started.append(proxy)
        chain.load_variants(db, catalog, base, {"direct": files_url, "latency": proxy_url})
        api, api_url = services.start_stac_api(db, base)
        started.append(api)
        aproxy, aproxy_url = services.start_latency_proxy(api_url, base, args.latency_ms,
                                                          "api-proxy")
        started.append(aproxy)
        api_root = aproxy_url if args.variant == "latency" else api_url
        collection = f"bench-{args.variant}"
        for n in range(args.rounds):
            for value in values if n % 2 == 0 else values[::-1]:
                os.environ["FORESTWATCH_IO_THREADS"] = value
                fl = chain.floor(cfg, api_root, collection, bbox, int(value))
                workdir = base / f"workflow-{value}-{n}"
                wf = chain.workflow(cfg, api_root, collection, folder / "truth" /
                                    "tree_cover.tif", workdir)
                shutil.rmtree(workdir)
                runs[value]["floor"].append(fl["total_s"])
                runs[value]["workflow"].append(wf["total_s"])
                print(f"round {n}, {value} reads in flight: floor {fl['total_s']:.1f} s, "
                      f"workflow {wf['total_s']:.1f} s", flush=True)
    finally:
        services.stop_all(started, db)
        shutil.rmtree(base, ignore_errors=True)

    print(f"\n{args.variant}" + (f", {args.latency_ms:g} ms per request through nginx"
                                 if args.variant == "latency" else "") + "\n")
    print("| reads in flight | floor s | workflow s | workflow mean s |")
    print("|---:|---|---|---:|")
    for value, r in runs.items():
        print(f"| {value} | {', '.join(f'{t:.1f}' for t in r['floor'])} | "
              f"{', '.join(f'{t:.1f}' for t in r['workflow'])} | "
              f"{sum(r['workflow']) / len(r['workflow']):.1f} |")


if __name__ == "__main__":
    main()
