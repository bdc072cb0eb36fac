"""A daily run's tiles sharing the day's fetches, through a real STAC API and file server.

The demo's archive and 4 tiles, served as in benchmarks/chain.py (PostgreSQL + pgstac +
stac-fastapi-pgstac, a file server answering Range requests; variant ``latency`` puts the
fault proxy adding ``--latency-ms`` in front of the files). The workflow brings the tiles
up to ``--until``; then, from copies of that folder, ``forestwatch daily --today <archive
end> --no-reports`` applies the days after it, twice per variant: with GDAL's HTTP cache
as the workflow sets it (``forestwatch.access.HTTP_CACHE_MIB``), and with it cut to 64 KB
(``CPL_VSIL_CURL_CACHE_SIZE``) and no decoded block kept (``FORESTWATCH_DECODED_CACHE_MIB=0``),
which is what every tile fetching its own files costs (as when each tile update cleared
the cache). Counts the asset requests the file server saw
and times each daily run whole.

    python benchmarks/daily_http.py                  # ~4 min on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "services"))


def _requests_seen(log: Path) -> int:
    """Asset requests (GET and HEAD) the file server has logged so far."""
    text = log.read_text(errors="replace")
    return text.count('"GET /data/') + text.count('"HEAD /data/')


def main() -> None:
    import stac_api as services
    from chain import load_variants  # benchmarks/chain.py, beside this script

    from forestwatch import steps
    from forestwatch.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--until", default="2024-09-15", help="the workflow's fast_forward.until")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()

    cfg = load_config(str(REPO / "config" / "config.yaml"))
    folder = (REPO / cfg["synthetic"]["folder"]).resolve()
    catalog = folder / "items.json"
    if not catalog.exists():
        steps.synthetic_archive(cfg, catalog)
    today = cfg["fast_forward"]["until"]

    base = Path(tempfile.mkdtemp(prefix="fw-daily-http-"))
    started, db = [], services.PgStac(base)
    rows = []
    try:
        files, files_url = services.start_file_server(folder, base)
        started.append(files)
        proxy, proxy_url = services.start_fault_proxy(files_url, base, name="files-proxy")
        started.append(proxy)
        delay = {"rules": [{"match": "", "delay_s": args.latency_ms / 1000, "times": -1}]}
        requests.post(f"{proxy_url}/_fault", json=delay, timeout=10).raise_for_status()
        load_variants(db, catalog, base, {"direct": files_url, "latency": proxy_url})
        api, api_url = services.start_stac_api(db, base)
        started.append(api)
        log = base / "file-server.log"

        for variant in ("direct", "latency"):
            run_cfg = copy.deepcopy(cfg)
            run_cfg["run_name"] = "daily"
            run_cfg["stac"].update(source="stac_api", url=api_url, collection=f"bench-{variant}")
            run_cfg["forest_mask"]["method"] = "file"
            run_cfg["forest_mask"]["file"]["path"] = str(folder / "truth" / "tree_cover.tif")
            run_cfg["fast_forward"]["until"] = args.until
            work = base / variant / "workflow"
            work.mkdir(parents=True)
            (work / "config.yaml").write_text(yaml.safe_dump(run_cfg))
            print(f"[{variant}] workflow up to {args.until} ...", flush=True)
            subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                            "-d", str(work), "--configfile", str(work / "config.yaml"),
                            "--cores", "2"], check=True, capture_output=True)
            for cache, env in (("256 MiB (default)", {}),
                               # no decoded block kept either: each tile reads its own
                               ("64 KB", {"CPL_VSIL_CURL_CACHE_SIZE": str(64 * 1024),
                                          "FORESTWATCH_DECODED_CACHE_MIB": "0"})):
                run_dir = base / variant / f"daily-{len(env)}"
                shutil.copytree(work, run_dir, ignore=shutil.ignore_patterns(".snakemake"))
                before = _requests_seen(log)
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-m", "forestwatch.cli", "daily", "--config", "config.yaml",
                     "--today", today, "--no-reports"],
                    cwd=run_dir, capture_output=True, text=True, env=os.environ | env)
                wall = time.perf_counter() - t0
                if proc.returncode:
                    raise SystemExit(f"the daily run failed:\n{proc.stdout[-2000:]}\n"
                                     f"{proc.stderr[-2000:]}")
                record = json.loads(next((run_dir / "results" / "daily" / "runs").glob(
                    "*/record.json")).read_text())
                days = sum(len(t.get("applied_days", [])) for t in record["tiles"].values()) \
                    if isinstance(record.get("tiles"), dict) else None
                rows.append((variant, cache, _requests_seen(log) - before, wall, days))
                print(f"[{variant}] daily, cache {cache}: {rows[-1][2]} requests, "
                      f"{wall:.1f} s", flush=True)
    finally:
        services.stop_all(started, db)
        shutil.rmtree(base, ignore_errors=True)

    print(f"\nDemo archive, 4 tiles, workflow up to {args.until}, daily run to {today}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| variant | GDAL HTTP cache | asset requests | daily run s | tile-days applied |")
    print("|---|---|---:|---:|---:|")
    for variant, cache, n, wall, days in rows:
        print(f"| {variant} | {cache} | {n} | {wall:.1f} | {days if days is not None else '-'} |")


if __name__ == "__main__":
    main()
