"""The whole chain against its I/O floor and the reference document's recipe, side by
side in one run, through a real STAC API (issue 15's benchmark).

The archive (the config's synthetic one) is served over HTTP by the project's test
services (tests/services): PostgreSQL + pgstac behind stac-fastapi-pgstac for the
searches, a file server answering Range requests for the COGs. Every variant measures,
in this order and on the same area:

1. **floor**: the searches (history and monitoring period, side by side, each in the
   parts the workflow cuts it into: ``FORESTWATCH_SEARCH_PARTS``), then every
   asset file the run needs (the index's bands and SCL of every item found) fetched and
   decoded once, whole, with ``--io-threads`` threads: what no implementation can go
   below;
2. **recipe**: benchmarks/reference_recipe.py, the document's fit and fast-forward
   snippets (defects fixed, the workflow's index, monitor and fit method), the whole area
   in one piece, in a fresh process;
3. **workflow**: ``snakemake --cores 2`` from an empty folder, end to end (tiles, masks
   from the tree-cover file, fit, fast-forward, reports, mosaics, alerts, publishing).

The variant ``latency`` repeats all three with every request to the API and to the file
server through a proxy adding ``--latency-ms`` (as an object store would): the tests'
fault proxy (Python, on the same cores) or, with ``--latency-proxy nginx``, nginx's
``echo_sleep`` (C; a timer costs no CPU while it waits, as an object store's round trip
costs the user none).

    python benchmarks/chain.py                        # demo config, both variants
    python benchmarks/chain.py --variants direct
    python benchmarks/chain.py --config config/config.yaml --extra big.yaml
    python benchmarks/chain.py --extra benchmarks/configs/large_tile_2y.yaml \
        benchmarks/configs/chain_large.yaml           # 1000 x 1000 px in 4 tiles of 10 km
    python benchmarks/chain.py --snakemake-args "--set-threads tile_state=1"
    python benchmarks/chain.py --snakemake-args mosaic   # up to the mosaics, no publishing
    python benchmarks/chain.py --file-server nginx    # a file server in C (Debian's nginx)
    python benchmarks/chain.py --file-server nginx --latency-proxy nginx

Prints a Markdown table with the ratios, the asset requests (GET and HEAD, from the file
server's log) each part made, the CPU seconds of each part's own processes and those the
test services used meanwhile, on the same cores (a provider's servers would not be);
BENCHMARKS.md keeps the last one written down.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "services"))


def _bands(cfg: dict) -> dict[str, str]:
    """Logical band -> asset key of the bands the run reads (the index's and SCL)."""
    from forestwatch.monitor import needed_bands
    from forestwatch.stac import band_keys

    keys = band_keys(cfg["stac"])
    return {b: keys[b] for b in [*needed_bands(cfg), "scl"]}


def benchmark_archive(config: str, extras: Sequence[str]) -> tuple[dict, Path, Path]:
    """The validated ``config`` with the ``extras`` files layered on top, its synthetic
    archive's folder and catalog (items.json), the archive generated if missing."""
    from forestwatch import steps
    from forestwatch.config import deep_update, load_config

    cfg = load_config(config)
    for extra in extras:
        cfg = load_config(config, deep_update(cfg, yaml.safe_load(Path(extra).read_text())))
    folder = (REPO / cfg["synthetic"]["folder"]).resolve()
    catalog = folder / "items.json"
    if not catalog.exists():
        steps.synthetic_archive(cfg, catalog)
    return cfg, folder, catalog


def area(cfg: dict) -> dict:
    """The config's tiles (``tiles``), their union on the grid (``bounds``, grid CRS
    metres; ``shape``, px) and its longitude/latitude box (``bbox``, for the searches)."""
    from odc.geo.geobox import GeoBox
    from rasterio.transform import from_origin

    from forestwatch.grid import make_tiles

    tiles = make_tiles(cfg)
    bounds = (min(t.bounds[0] for t in tiles), min(t.bounds[1] for t in tiles),
              max(t.bounds[2] for t in tiles), max(t.bounds[3] for t in tiles))
    res = cfg["grid"]["resolution"]
    shape = (round((bounds[3] - bounds[1]) / res), round((bounds[2] - bounds[0]) / res))
    bbox = list(GeoBox(shape, from_origin(bounds[0], bounds[3], res, res),
                       cfg["grid"]["crs"]).geographic_extent.boundingbox)
    return {"tiles": tiles, "bounds": bounds, "shape": shape, "bbox": bbox}


def load_variants(db, catalog: Path, base: Path, file_urls: dict[str, str]) -> None:
    """Load the archive into pgstac once per variant, as collection ``bench-<variant>``
    whose asset hrefs point at that variant's file URL (the file server, or its proxy)."""
    import stac_api as services

    for name, url in file_urls.items():
        collection, items = services.http_items(catalog, url)
        collection["id"] = f"bench-{name}"
        for it in items:
            it["collection"] = collection["id"]
        db.load(collection, items, base)


def floor(cfg: dict, api: str, collection: str, bbox, threads: int) -> dict:
    """Search both periods (side by side, each in the parts the workflow cuts it into),
    then fetch and decode every needed asset file once."""
    import numpy as np
    import rasterio
    from pystac_client import Client

    from forestwatch.stac import search_parts, search_periods

    def search(period) -> list:
        return list(Client.open(api).search(
            collections=[collection], bbox=bbox, datetime=list(period),
            query={"eo:cloud_cover": {"lt": cfg["stac"]["max_cloud_cover"]}}).items())

    # both periods side by side, each in its parts, as the workflow's tile_state searches
    # them (FORESTWATCH_SEARCH_PARTS, inherited by the workflow's process)
    t0 = time.perf_counter()
    periods = (search_periods(cfg["history"]["start"], cfg["history"]["end"], search_parts())
               + search_periods(cfg["history"]["end"], cfg["fast_forward"]["until"],
                                search_parts()))
    with ThreadPoolExecutor(len(periods)) as pool:
        found = {it.id: it for part in pool.map(search, periods) for it in part}
    items = list(found.values())
    t_search = time.perf_counter() - t0
    hrefs = sorted({it.assets[k].href for it in items for k in _bands(cfg).values()})
    env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_MAX_RETRY": "3",
           "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif"}

    def read(href: str) -> int:
        with rasterio.Env(**env), rasterio.open(href) as src:
            return int(np.asarray(src.read(1)).nbytes)

    t1 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        decoded = sum(pool.map(read, hrefs))
    return {"search_s": t_search, "read_s": time.perf_counter() - t1,
            "total_s": time.perf_counter() - t0, "files": len(hrefs),
            "items": len({it.id for it in items}), "decoded_mib": decoded / 2**20}


def recipe(cfg: dict, api: str, collection: str, bounds, tree_cover: Path, out: Path) -> dict:
    """benchmarks/reference_recipe.py in a fresh process; its timings and wall time."""
    mon = cfg["monitor"]
    spec = {"url": api, "collection": collection, "bounds": list(bounds),
            "crs": cfg["grid"]["crs"], "resolution": cfg["grid"]["resolution"],
            "history": [str(cfg["history"]["start"]), str(cfg["history"]["end"])],
            "until": str(cfg["fast_forward"]["until"]), "bands": _bands(cfg),
            "index": cfg["index"], "monitor_class": mon["class"], "params": mon["params"],
            "fit": {"method": mon["fit"]["method"]}, "threads": 2,
            "valid_scl": cfg["stac"]["valid_scl_classes"],
            "max_cloud_cover": cfg["stac"]["max_cloud_cover"], "tree_cover": str(tree_cover),
            "threshold": cfg["forest_mask"]["file"]["threshold"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(spec, default=str))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "reference_recipe.py"),
                    "--spec", str(out / "spec.json"), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    return {"total_s": wall, **json.loads((out / "timings.json").read_text())}


def workflow(cfg: dict, api: str, collection: str, tree_cover: Path, workdir: Path,
             extra_args: Sequence[str] = ()) -> dict:
    """``snakemake --cores 2`` end to end in an empty folder (``extra_args`` appended);
    wall time and job count."""
    run_cfg = copy.deepcopy(cfg)
    run_cfg["run_name"] = "chain"
    run_cfg["stac"].update(source="stac_api", url=api, collection=collection)
    run_cfg["forest_mask"]["method"] = "file"
    run_cfg["forest_mask"]["file"]["path"] = str(tree_cover)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(run_cfg))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-d", str(workdir), "--configfile", str(workdir / "config.yaml"),
                           "--cores", "2", *extra_args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"the workflow failed:\n{proc.stderr[-3000:]}")
    jobs = proc.stderr.count("Finished jobid")
    per_rule: dict[str, float] = {}
    for tsv in (workdir / "results" / "chain" / "benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(workdir / "results" / "chain" / "benchmarks").parts[0]
        lines = tsv.read_text().splitlines()
        if len(lines) > 1:
            per_rule[rule] = per_rule.get(rule, 0.0) + float(lines[1].split("\t")[0])
    return {"total_s": wall, "jobs": jobs, "per_rule_s": per_rule}


def _services_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) the test services' processes (and their children:
    PostgreSQL's backends) have used so far. They run on the machine's cores beside what is
    measured, where a provider's servers would not: a part's share of it says how much of
    its wall time may be the test servers'. A backend that ended in between is not
    counted (the STAC API keeps its connections)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            procs = [psutil.Process(pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


def _own_cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its children that ended (the
    recipe's and the workflow's processes, once they have)."""
    import resource

    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


def _asset_requests(log: Path) -> dict[str, int]:
    """GET and HEAD requests the file server has answered so far (its access log)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return {m: text.count(f'"{m} ') for m in ("GET", "HEAD")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--extra", nargs="*", default=[], help="config files layered on top")
    ap.add_argument("--variants", default="direct,latency")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--io-threads", type=int, default=16)
    ap.add_argument("--file-server", choices=("python", "nginx"), default="python",
                    help="the asset files' server: the tests' (uvicorn, Python, on the same "
                         "cores) or nginx (C; installed by tests/services/install_nginx.sh)")
    ap.add_argument("--latency-proxy", choices=("python", "nginx"), default="python",
                    help="the proxy adding the latency: the tests' fault proxy (Python, "
                         "~2-3 ms of CPU per request on the same cores) or nginx (C)")
    ap.add_argument("--snakemake-args", default="",
                    help="more arguments for the workflow's snakemake, e.g. "
                         "'--set-threads tile_state=1'")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work folder (the workflow's logs, per job and rule)")
    args = ap.parse_args()

    import stac_api as services

    cfg, folder, catalog = benchmark_archive(args.config, args.extra)
    tree_cover = folder / "truth" / "tree_cover.tif"
    tiles, bounds, shape, bbox = (area(cfg)[k] for k in ("tiles", "bounds", "shape", "bbox"))

    base = Path(tempfile.mkdtemp(prefix="fw-chain-"))
    started, db = [], services.PgStac(base)
    results = {}
    try:
        files, files_url = (services.start_nginx_file_server(folder, base)
                            if args.file_server == "nginx"
                            else services.start_file_server(folder, base))
        started.append(files)

        def latency_proxy(upstream: str, name: str) -> str:
            if args.latency_proxy == "nginx":
                srv, url = services.start_latency_proxy(upstream, base, args.latency_ms, name)
            else:
                srv, url = services.start_fault_proxy(upstream, base, name=name)
                delay = {"rules": [{"match": "", "delay_s": args.latency_ms / 1000,
                                    "times": -1}]}
                requests.post(f"{url}/_fault", json=delay, timeout=10).raise_for_status()
            started.append(srv)
            return url

        fproxy_url = latency_proxy(files_url, "files-proxy")
        load_variants(db, catalog, base, {"direct": files_url, "latency": fproxy_url})
        api, api_url = services.start_stac_api(db, base)
        started.append(api)
        aproxy_url = latency_proxy(api_url, "api-proxy")
        served = base / "file-server.log"  # every asset request, proxied or not

        service_pids = [srv.pid for srv in started] + [db.server.pid]

        def counted(run):
            """``run()``'s result with the asset requests it made (``requests``) and the
            CPU seconds of its own processes and of the test services meanwhile (``cpu``:
            ``own``, ``services``)."""
            before, cpu, own = (_asset_requests(served), _services_cpu_s(service_pids),
                                _own_cpu_s())
            out = run()
            own = _own_cpu_s() - own
            time.sleep(0.2)  # the server's last log lines
            after = _asset_requests(served)
            return {**out, "requests": {m: after[m] - before[m] for m in after},
                    "cpu": {"own": own, "services": _services_cpu_s(service_pids) - cpu}}

        for variant in args.variants.split(","):
            api_root = api_url if variant == "direct" else aproxy_url
            coll = f"bench-{variant}"
            print(f"[{variant}] floor ...", flush=True)
            fl = counted(partial(floor, cfg, api_root, coll, bbox, args.io_threads))
            print(f"[{variant}] recipe ...", flush=True)
            rc = counted(partial(recipe, cfg, api_root, coll, bounds, tree_cover,
                                 base / variant / "recipe"))
            print(f"[{variant}] workflow ...", flush=True)
            wf = counted(partial(workflow, cfg, api_root, coll, tree_cover,
                                 base / variant / "workflow", shlex.split(args.snakemake_args)))
            results[variant] = {"floor": fl, "recipe": rc, "workflow": wf}
            print(json.dumps(results[variant], indent=1, default=str), flush=True)
    finally:
        services.stop_all(started, db)
        if args.keep:
            print(f"kept {base}", flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)

    print(f"\nArea {shape[0]} x {shape[1]} px ({len(tiles)} tiles of "
          f"{cfg['grid']['tile_size']} m), {cfg['index']} {cfg['monitor']['class']}; "
          f"I/O threads {args.io_threads}; file server {args.file_server}; "
          f"latency proxy {args.latency_proxy}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| variant | floor s (search + fetch/decode) | recipe s | workflow s | jobs | "
          "workflow / floor | recipe / workflow |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant, r in results.items():
        f, rc, wf = r["floor"], r["recipe"], r["workflow"]
        print(f"| {variant} | {f['total_s']:.1f} ({f['search_s']:.1f} + {f['read_s']:.1f}; "
              f"{f['files']} files, {f['decoded_mib']:.0f} MiB) | {rc['total_s']:.1f} | "
              f"{wf['total_s']:.1f} | {wf['jobs']} | {wf['total_s'] / f['total_s']:.1f} | "
              f"{rc['total_s'] / wf['total_s']:.2f} |")
    for variant, r in results.items():
        rules = sorted(r["workflow"]["per_rule_s"].items(), key=lambda kv: -kv[1])
        print(f"\n{variant}: workflow job seconds by rule (summed over tiles): "
              + ", ".join(f"{k} {v:.1f}" for k, v in rules))
        print(f"{variant}: recipe phases: " + ", ".join(
            f"{k} {v:.1f}" for k, v in r["recipe"].items()
            if isinstance(v, float)))
        print(f"{variant}: asset requests (GET + HEAD): " + ", ".join(
            f"{part} {r[part]['requests']['GET']} + {r[part]['requests']['HEAD']}"
            for part in ("floor", "recipe", "workflow")))
        print(f"{variant}: the test services' CPU s meanwhile (file server, proxies, STAC "
              "API, PostgreSQL): " + ", ".join(
                  f"{part} {r[part]['cpu']['services']:.1f}"
                  for part in ("floor", "recipe", "workflow")))
        cores = os.cpu_count() or 1
        print(f"{variant}: CPU s of each part's own processes (share of {cores} cores over "
              "its wall time): " + ", ".join(
                  f"{part} {r[part]['cpu']['own']:.1f} "
                  f"({100 * r[part]['cpu']['own'] / (cores * r[part]['total_s']):.0f} %)"
                  for part in ("floor", "recipe", "workflow")))


if __name__ == "__main__":
    main()
