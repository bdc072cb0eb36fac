"""One daily run: lock, discover, update the tiles with work, refresh their reports, record.

1. take the run lock (:mod:`forestwatch.runlock`) - a second run waits or stops;
2. discovery (:mod:`.discover`): one search, then which tiles have work; written to
   ``runs/<run>/discovery.json`` and ``items.json``;
3. the tile updates, each its own Snakemake job (rule ``update_tile``, ``rules/daily.smk``),
   in one Snakemake run that also refreshes those tiles' reports and the mosaic:
   parallel with ``--cores N``, batched onto a cluster with ``--profile profiles/slurm``.
   Tiles added to the AOI are masked, fitted and fast-forwarded first, in the same run.
   (``executor="serial"`` updates the tiles one after another in this process instead:
   the same code, for debugging and comparison.);
4. the run record ``runs/<run>/record.json`` (:mod:`.record`) and the exit status;
5. retention (:mod:`.retention`): the per-tile files of runs older than
   ``operational.keep_runs`` are removed, their records stay.

A run id is ``<UTC start time, to the microsecond>_<today>``; a run killed at any point leaves its states
intact (every write is atomic) and the next run takes over: discovery finds again what
was not applied.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from .. import runlock
from ..grid import make_tiles
from ..io import write_json
from ..layout import RunLayout, run_root
from .discover import Discovery, discover, write_discovery
from .record import EXIT_FAILED, build_run_record
from .retention import prune_run_details

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]


def new_run_id(today: dt.date) -> str:
    """``<UTC now to the microsecond>_<today>``: sorts by start time, unique per run."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}_{today}"


def resolve_profile(profile: str | Path | None) -> Path:
    """A profile folder: as given (relative to the working folder), else the project's own
    (``slurm`` or ``profiles/slurm`` from a deployment folder); default ``operational``."""
    if profile is None:
        return REPO / "profiles" / "operational"
    for candidate in (Path(profile), REPO / profile, REPO / "profiles" / profile):
        if (candidate / "profile.yaml").exists() or (candidate / "config.yaml").exists():
            return candidate.resolve()
    raise FileNotFoundError(f"no Snakemake profile {profile!r} (a folder with profile.yaml), "
                            f"neither here nor in {REPO / 'profiles'}")


def snakemake_command(configfile: str | Path, run: str, targets: Sequence[str], *,
                      cores: int, profile: str | Path | None = None,
                      extra: Sequence[str] = ()) -> list[str]:
    """The Snakemake invocation of a daily run's tile updates and reports.

    ``--nolock``: the run lock is the authority on this run folder, and a Snakemake lock
    left by a killed run would block every later cron run until someone ran ``--unlock``.
    """
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
            "--profile", str(resolve_profile(profile)),
            "--configfile", str(Path(configfile).resolve()), "--config", f"daily_run={run}",
            "--cores", str(cores), "--nolock", *extra, *targets]


def run_daily(cfg: dict, *, today: dt.date, catalog: str | None,
              run_dir: str | Path | None = None, configfile: str | Path | None = None,
              dry_run: bool = False, executor: str = "snakemake", reports: bool = True,
              cores: int = 2, profile: str | Path | None = None, wait_s: float = 0.0,
              snakemake_args: Sequence[str] = (), threads: int = 1,
              run: str | None = None) -> dict:
    """Run one daily update of every tile of ``cfg``; return the run record (also written
    to ``runs/<run>/record.json`` unless ``dry_run``).

    ``executor`` is ``snakemake`` (needs ``configfile``, the config the workflow reads) or
    ``serial``. Raises :class:`forestwatch.runlock.RunLocked` when another run holds the
    lock after ``wait_s`` seconds, and ``FileNotFoundError`` when no tile has a state yet
    (the first catch-up is `snakemake`'s, not a daily run's).
    """
    t0 = time.perf_counter()
    layout = RunLayout(run_dir or run_root(cfg["run_name"]))
    tiles = make_tiles(cfg)
    if not any(Path(layout.current_state(t.id)).exists() for t in tiles):
        raise FileNotFoundError(
            f"no tile of {layout.root} has a current state; run `snakemake` first (mask, fit "
            "and fast-forward up to fast_forward.until), then the daily command.")
    run = run or new_run_id(today)
    if dry_run:  # reads only: every state write is atomic, no lock needed
        disc, items = discover(cfg, layout, tiles, run=run, today=today, catalog=catalog)
        plans = _dry_plans(cfg, layout, disc, items, catalog, today)
        return build_run_record(layout, disc, dry_run=True, executor=executor,
                                duration_s=time.perf_counter() - t0, plans=plans)
    with runlock.acquire(layout.lock(), command=f"forestwatch daily --today {today}",
                         wait_s=wait_s) as lock:
        log.info("daily run %s: %d tile(s), run lock %s", run, len(tiles), layout.lock())
        disc, items = discover(cfg, layout, tiles, run=run, today=today, catalog=catalog)
        write_discovery(layout, disc, items)
        problem = None
        if executor == "serial":
            _update_serially(cfg, layout, disc, catalog, threads)
            if reports and disc.tiles and configfile:
                problem = _snakemake(lock, configfile, run, ["all"], cores, profile,
                                     snakemake_args)
        elif disc.tiles:
            if configfile is None:
                raise ValueError("the snakemake executor needs the config file")
            targets = [layout.tile_record(run, tid) for tid in disc.tiles]
            problem = _snakemake(lock, configfile, run, targets + (["all"] if reports else []),
                                 cores, profile, snakemake_args)
        record = build_run_record(layout, disc, dry_run=False, executor=executor,
                                  duration_s=time.perf_counter() - t0)
        if problem and not record["failed_tiles"]:
            record["snakemake_error"] = problem
            record["exit_status"] = EXIT_FAILED
        write_json(layout.run_record(run), record)
        prune_run_details(layout, keep=cfg["operational"]["keep_runs"], current=run)
    log.info("daily run %s done in %.1f s: %d item(s) applied on %d tile(s), %d failed, "
             "%d waiting, exit status %d", run, record["duration_s"], record["items_applied"],
             len(record["tiles_updated"]), len(record["failed_tiles"]),
             len(record["waiting_tiles"]), record["exit_status"])
    return record


def _snakemake(lock: runlock.RunLock, configfile, run: str, targets: list[str], cores: int,
               profile, extra) -> str | None:
    """Run Snakemake as this run's child: it inherits the lock (its descriptor, so the
    lock is held while either lives, and its token, so its ``onstart`` knows it)."""
    cmd = snakemake_command(configfile, run, targets, cores=cores, profile=profile, extra=extra)
    log.info("running %s", " ".join(cmd))
    env = os.environ | {runlock.TOKEN_ENV: lock.token}
    proc = subprocess.run(cmd, env=env, pass_fds=(lock.fd,))
    if proc.returncode != 0:
        return f"snakemake exited with status {proc.returncode} (its output says which job)"
    return None


def _update_serially(cfg: dict, layout: RunLayout, disc: Discovery, catalog: str | None,
                     threads: int) -> None:
    from .. import steps

    missing = [t for t, info in disc.tiles.items() if info["state"] == "missing"]
    if missing:
        raise FileNotFoundError(
            f"no current state for tile(s) {', '.join(missing[:5])}; run `snakemake` first "
            "(the default executor of `forestwatch daily` fits new tiles itself).")
    for tid in disc.tiles:
        try:
            steps.update_tile(cfg, tid, layout.root, disc.run, catalog,
                              layout.tile_record(disc.run, tid), threads=threads)
        except Exception as err:  # noqa: BLE001 - one tile's failure must not stop the rest
            log.error("tile %s: update failed, state unchanged: %s: %s", tid,
                      type(err).__name__, err)
            _log_to_tile(layout, disc.run, tid, err)


def _log_to_tile(layout: RunLayout, run: str, tile_id: str, err: Exception) -> None:
    """What a failed serial update leaves where a failed job leaves it: its log."""
    path = Path(layout.update_log(run, tile_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    path.write_text("".join(traceback.format_exception(err))
                    + f"{stamp} ERROR forestwatch: {type(err).__name__}: {err}\n")


def _dry_plans(cfg: dict, layout: RunLayout, disc: Discovery, items, catalog, today
               ) -> dict[str, dict]:
    from ..grid import tile_by_id
    from ..monitor import UnreadablePolicy, advance_tile
    from ..steps import tile_search, tile_store

    by_id = {it.id: it for it in items}
    plans = {}
    for tid, info in disc.tiles.items():
        if info["state"] == "missing":
            plans[tid] = {"note": "no state yet: masked, fitted and fast-forwarded first"}
            continue
        tile = tile_by_id(cfg, tid)
        update = advance_tile(tile_store(cfg, layout.root, tid), tile, cfg, run=disc.run,
                              until=today, policy=UnreadablePolicy(mode="skip"),
                              search=tile_search(cfg, tile, catalog),
                              items=[by_id[i] for i in info["items"]], dry_run=True)
        plans[tid] = update.to_dict()
    return plans


__all__ = ["run_daily", "snakemake_command", "new_run_id"]
