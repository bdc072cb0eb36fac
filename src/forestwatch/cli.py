"""Command line: ``forestwatch daily`` (the operational run), ``forestwatch serve`` (the
WMS) and ``forestwatch check-config``.

    forestwatch daily --config config/config.yaml            # discover, update, refresh reports
    forestwatch daily --config config/config.yaml --dry-run  # what it would do, per tile
    forestwatch daily --config config/config.yaml --profile profiles/slurm   # on a cluster
    forestwatch serve --config config/config.yaml --port 8080  # WMS until Ctrl-C
    forestwatch serve --config config/config.yaml --stop       # stop it from another shell

Exit status of ``daily``: 0 every tile up to date; 1 a tile update failed (its state is
unchanged; the record and its log say why); 2 bad configuration or no states yet; 3 an
acquisition was applied without an asset that stayed unreadable past its grace period,
or a tile waits for one; 75 another run holds the run lock (nothing was changed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

from .config import ConfigError, load_config


def catalog_path(cfg: dict) -> str | None:
    if cfg["stac"]["source"] == "synthetic":
        return str(Path(cfg["synthetic"]["folder"]) / "items.json")
    if cfg["stac"]["source"] == "local":
        return cfg["stac"]["catalog"]
    return None


def _print_plan(record: dict) -> None:
    print(f"window {record['window'][0]} .. {record['window'][1]}: "
          f"{record['items_found']} item(s) found, "
          f"{len(record['duplicates_dropped'])} older version(s) dropped, "
          f"{record['tiles_up_to_date']} tile(s) up to date")
    if not record["tiles"]:
        print("nothing new: no tile to update")
        return
    verb = "to apply" if record["dry_run"] else "applied"
    print(f"{'tile':<14} {verb:>10} {'again':>6} {'skipped':>8}  note")
    for tid, t in record["tiles"].items():
        notes = [t.get("note", ""), t.get("error", "")]
        if t.get("replayed_from"):
            notes.append(f"replayed from {t['replayed_from']}")
        if t.get("recovered_from"):
            notes.append(f"recovered from {t['recovered_from']}")
        if t.get("waiting_since"):
            notes.append(f"waiting for unreadable asset(s) since {t['waiting_since']}")
        if t.get("assets_skipped"):
            notes.append(f"{len(t['assets_skipped'])} unreadable asset(s) given up")
        print(f"{tid:<14} {len(t.get('applied_days', [])):>10} "
              f"{len(t.get('reapplied_days', [])):>6} {len(t.get('skipped', [])):>8}  "
              f"{'; '.join(n for n in notes if n)}".rstrip())


def daily(args: argparse.Namespace) -> int:
    from .daily import run_daily
    from .daily.run import new_run_id
    from .layout import RunLayout, run_root
    from .runlock import EXIT_LOCKED, RunLocked
    from .workflow import setup_logging

    cfg = load_config(args.config)
    today = dt.date.fromisoformat(args.today) if args.today else dt.datetime.now(dt.UTC).date()
    layout = RunLayout(run_root(cfg["run_name"]))
    run = new_run_id(today)
    log_path = Path(layout.daily_log(run))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    setup_logging(None if args.dry_run else str(log_path))
    try:
        record = run_daily(
            cfg, today=today, catalog=catalog_path(cfg), run_dir=layout.root,
            configfile=args.config, dry_run=args.dry_run,
            executor="serial" if args.serial else "snakemake", reports=not args.no_reports,
            cores=args.cores, profile=args.profile,
            wait_s=cfg["operational"]["lock_wait_s"] if args.wait is None else args.wait,
            run=run)
    except RunLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_LOCKED
    _print_plan(record)
    if not args.dry_run:
        print(f"run record: {layout.run_record(record['run'])}")
    return 0 if args.dry_run else record["exit_status"]


def serve(args: argparse.Namespace) -> int:
    from .layout import RunLayout, run_root
    from .publish import server
    from .workflow import setup_logging

    cfg = load_config(args.config)
    layout = RunLayout(run_root(cfg["run_name"]))
    try:
        if args.stop:
            pid = server.stop(layout.serve_pid())
            print(f"stopped the WMS server (pid {pid})" if pid else
                  f"no WMS server runs for {layout.root} (no live pid in {layout.serve_pid()})")
            return 0
        setup_logging(None)
        server.serve(mapfile=layout.wms_mapfile(), config_file=layout.mapserver_config(),
                     pid_file=layout.serve_pid(), host=args.host, port=args.port)
    except server.ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print(json.dumps(cfg, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="forestwatch", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("daily", help="discover new acquisitions and bring every tile forward")
    d.add_argument("--config", default="config/config.yaml")
    d.add_argument("--today", help="YYYY-MM-DD (default: today, UTC)")
    d.add_argument("--dry-run", action="store_true", help="show per tile what would be applied")
    d.add_argument("--cores", type=int, default=2, help="Snakemake --cores (default 2)")
    d.add_argument("--profile", help="Snakemake profile for the tile updates "
                   "(default: profiles/operational; profiles/slurm on a cluster)")
    d.add_argument("--serial", action="store_true",
                   help="update the tiles one after another in this process (no Snakemake)")
    d.add_argument("--no-reports", action="store_true", help="update states only")
    d.add_argument("--wait", type=float, default=None,
                   help="seconds to wait for the run lock (default operational.lock_wait_s)")
    d.set_defaults(func=daily)
    s = sub.add_parser("serve", help="serve the run's WMS (MapServer) over HTTP until Ctrl-C "
                       "or `serve --stop`")
    s.add_argument("--config", default="config/config.yaml")
    s.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    s.add_argument("--stop", action="store_true",
                   help="stop the server running for this config's run (its PID file)")
    s.set_defaults(func=serve)
    c = sub.add_parser("check-config", help="validate a config and print it with defaults")
    c.add_argument("config")
    c.set_defaults(func=check_config)
    args = ap.parse_args(argv)
    from .workflow import prepare_process

    prepare_process()  # as before a workflow job (forestwatch.workflow.run_job)
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
