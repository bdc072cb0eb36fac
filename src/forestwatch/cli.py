"""Command line: ``forestwatch daily`` (the operational run) and ``forestwatch check-config``.

    forestwatch daily --config config/config.yaml            # discover, update, refresh reports
    forestwatch daily --config config/config.yaml --dry-run  # what it would do, per tile
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import subprocess
import sys
from pathlib import Path

from .config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def catalog_path(cfg: dict) -> str | None:
    if cfg["stac"]["source"] == "synthetic":
        return str(Path(cfg["synthetic"]["folder"]) / "items.json")
    if cfg["stac"]["source"] == "local":
        return cfg["stac"]["catalog"]
    return None


def _print_plan(record: dict) -> None:
    print(f"window {record['window'][0]} .. {record['window'][1]}: "
          f"{record['items_found']} item(s) found, "
          f"{len(record['duplicates_dropped'])} reprocessed duplicate(s) dropped")
    rows = [(tid, len(t.get("applied_items", [])), len(t.get("skipped", [])),
             t.get("replayed_from") or t.get("recovered_from") or "", t.get("error", ""))
            for tid, t in record["tiles"].items()]
    if not rows:
        print("nothing new: no tile to update")
        return
    verb = "to apply" if record["dry_run"] else "applied"
    print(f"{'tile':<14} {verb:>10} {'skipped':>8}  note")
    for tid, n_apply, n_skip, note, err in rows:
        print(f"{tid:<14} {n_apply:>10} {n_skip:>8}  {note} {err}".rstrip())


def daily(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    today = dt.date.fromisoformat(args.today) if args.today else dt.datetime.now(dt.UTC).date()
    from .operational import run_daily
    from .workflow import setup_logging

    run_dir = Path("results") / cfg["run_name"]
    log_dir = run_dir / "logs" / "daily"
    log_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(str(log_dir / f"{today}.log"))
    record = run_daily(cfg, run_dir, catalog_path(cfg), today, dry_run=args.dry_run)
    _print_plan(record)
    if args.dry_run:
        return 0
    if record["tiles_updated"] and not args.no_reports:
        # refresh the reports of the tiles whose state changed (their state is newer)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--profile", str(REPO / "profiles" / "operational"),
               "--configfile", str(Path(args.config).resolve()), "--cores", str(args.cores)]
        if subprocess.run(cmd).returncode != 0:
            print("report refresh failed; states are saved, rerun `snakemake` to retry",
                  file=sys.stderr)
            return 1
    return 1 if record["failed_tiles"] else 0


def check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print(json.dumps(cfg, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="forestwatch", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("daily", help="discover new acquisitions and bring every tile forward")
    d.add_argument("--config", default="config/config.yaml")
    d.add_argument("--today", help="YYYY-MM-DD (default: today, UTC)")
    d.add_argument("--dry-run", action="store_true", help="show per tile what would be applied")
    d.add_argument("--cores", type=int, default=2)
    d.add_argument("--no-reports", action="store_true", help="update states only")
    d.set_defaults(func=daily)
    c = sub.add_parser("check-config", help="validate a config and print it with defaults")
    c.add_argument("config")
    c.set_defaults(func=check_config)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001
        logging.getLogger("forestwatch").error("%s: %s", type(err).__name__, err, exc_info=True)
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
