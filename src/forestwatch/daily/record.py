"""The run record of a daily run (``runs/<run>/record.json``), made from the discovery and
the tile records its ``update_tile`` jobs wrote, and the exit status it implies.

A tile with work but no tile record failed: its job raised or was killed; the reason is
the last error line of its log. The record is written once, by ``forestwatch daily``
(:func:`forestwatch.daily.run.run_daily`), after the tile updates.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..layout import RunLayout
from .discovery import Discovery

#: exit statuses of ``forestwatch daily`` (README, Operations)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREADABLE = 3


def _failure_reason(log_path: Path) -> str:
    if not log_path.exists():
        return "its update job did not run (see the Snakemake output of the daily run)"
    errors = [line for line in log_path.read_text(errors="replace").splitlines()
              if " ERROR " in line]
    return (errors[-1].split(": ", 1)[-1] if errors
            else f"its update job did not finish (see {log_path})")


def build_run_record(layout: RunLayout, disc: Discovery, *, dry_run: bool, executor: str,
                     duration_s: float, plans: dict[str, dict] | None = None) -> dict:
    """The run record; ``plans`` are the tile updates of a dry run (nothing on disk)."""
    tiles: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for tid in disc.tiles:
        if plans is not None:
            rec = plans.get(tid)
        else:
            path = Path(layout.tile_record(disc.run, tid))
            rec = json.loads(path.read_text()) if path.exists() else None
        if rec is None:
            failed[tid] = rec_error = _failure_reason(Path(layout.update_log(disc.run, tid)))
            tiles[tid] = {"error": rec_error}
            continue
        tiles[tid] = {k: v for k, v in rec.items() if v and k not in ("tile_id", "run")}
    updated = [t for t, r in tiles.items() if r.get("applied_days") or r.get("replayed_from")
               or r.get("rebuilt_from_fit")]
    waiting = {t: r["waiting_since"] for t, r in tiles.items() if r.get("waiting_since")}
    skipped_assets = [dict(a, tile=t) for t, r in tiles.items()
                      for a in r.get("assets_skipped", [])]
    record = {
        "run": disc.run,
        "today": disc.today,
        "dry_run": dry_run,
        "executor": executor,
        "window": disc.window,
        "published_window": disc.published_window,
        "items_found": disc.items_found,
        "duplicates_dropped": disc.duplicates_dropped,
        "tiles_with_work": len(disc.tiles),
        "tiles_up_to_date": len(disc.up_to_date),
        "tiles_updated": updated,
        "items_applied": sum(len(r.get("applied_items", [])) for r in tiles.values()),
        "new_confirmed_breaks": sum(r.get("new_breaks", 0) for r in tiles.values()),
        "waiting_tiles": waiting,
        "assets_skipped": skipped_assets,
        "failed_tiles": failed,
        "tiles": tiles,
        "duration_s": round(duration_s, 2),
    }
    record["exit_status"] = exit_status(record)
    return record


def exit_status(record: dict) -> int:
    """1 if a tile failed; else 3 if an acquisition was applied without an unreadable
    asset or a tile waits for one; else 0."""
    if record["failed_tiles"]:
        return EXIT_FAILED
    if record["assets_skipped"] or record["waiting_tiles"]:
        return EXIT_UNREADABLE
    return EXIT_OK


__all__ = ["build_run_record", "exit_status", "EXIT_OK", "EXIT_FAILED", "EXIT_UNREADABLE"]
