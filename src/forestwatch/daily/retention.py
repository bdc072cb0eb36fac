"""Retention of the daily runs' files: the only code that deletes under ``runs/``.

Every daily run writes one file per tile with work (its record, log and timing) and the
items it found. At 10,000 tiles that is tens of thousands of files a day, which nothing
reads once the run is over: the states' ledgers say what was applied, and each run's
``record.json`` keeps the summary. So after a run has written its record, the details of
the runs older than the newest ``operational.keep_runs`` are removed
(:meth:`forestwatch.layout.RunLayout.run_details`); their ``record.json`` and daily logs
stay. ``keep_runs: null`` keeps everything.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

from ..layout import RunLayout

log = logging.getLogger(__name__)


def finished_runs(layout: RunLayout) -> list[str]:
    """Ids of the runs that wrote their record, oldest first (run ids sort by start time)."""
    runs = Path(layout.runs())
    if not runs.is_dir():
        return []
    return sorted(p.name for p in runs.iterdir()
                  if p.is_dir() and Path(layout.run_record(p.name)).exists())


def last_run_day(layout: RunLayout) -> dt.date | None:
    """``today`` of the newest finished run (its record), ``None`` before the first."""
    for run in reversed(finished_runs(layout)):
        try:
            return dt.date.fromisoformat(
                json.loads(Path(layout.run_record(run)).read_text())["today"])
        except (OSError, ValueError, KeyError):
            log.warning("run record of %s cannot be read; looking at the run before", run)
    return None


def prune_run_details(layout: RunLayout, *, keep: int | None, current: str) -> list[str]:
    """Remove the details of every finished run but the newest ``keep`` (and ``current``);
    returns the ids of the runs pruned now. Runs without a record (killed, or running) are
    never touched."""
    if keep is None:
        return []
    runs = [r for r in finished_runs(layout) if r != current]
    older = runs[:max(0, len(runs) - max(0, keep - 1))]
    pruned = []
    for run in older:
        removed = False
        for path in map(Path, layout.run_details(run)):
            if path.is_dir():
                shutil.rmtree(path)
                removed = True
            elif path.exists():
                path.unlink()
                removed = True
        if removed:
            pruned.append(run)
    if pruned:
        log.info("retention: removed the per-tile files of %d run(s) older than the newest "
                 "%d (operational.keep_runs); their record.json stay: %s", len(pruned), keep,
                 ", ".join(pruned))
    return pruned


__all__ = ["finished_runs", "last_run_day", "prune_run_details"]
