"""Daily operation: find new acquisitions, bring each tile's state forward exactly once.

One run (``forestwatch daily``):

1. **discover**: one paginated STAC search over the whole AOI for the acquisitions of the
   look-back window (``operational.lookback_days`` before today, extended back to the
   oldest tile's last applied day), reprocessed duplicates of a datatake resolved to the
   newest processing baseline, items assigned to tiles by footprint;
2. **update** each tile with items missing from its ledger: the state is loaded (a corrupt
   file is reported and the newest intact kept state is used instead), the new days are
   monitored in date order, the previous state is kept in ``state/history/<tile>/`` (up
   to ``operational.keep_states``) and the new one written atomically;
3. a run record ``runs/<timestamp>.json`` says what was found, applied, skipped and why.

A day not newer than a tile's last applied day (a late publication) follows
``operational.late_items``: ``skip`` records it as skipped; ``replay`` restarts from the
newest kept state older than it and re-applies everything after it in date order.
Nothing in this module deletes or rewrites a state except through :func:`commit_state`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pystac
from shapely.geometry import box, shape
from shapely.ops import unary_union

from .access import clear_gdal_http_cache
from .grid import Tile, make_tiles
from .io import write_json
from .monitoring import datatake_key, fast_forward
from .stac import search_items
from .state import StateCorruptError, TileState, load_state, save_state

log = logging.getLogger(__name__)


@dataclass
class TileUpdate:
    """What one tile's update did (one entry of the run record)."""

    tile_id: str
    applied_days: list[str] = field(default_factory=list)
    applied_items: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    new_breaks: int = 0
    recovered_from: str | None = None
    replayed_from: str | None = None
    error: str | None = None


def state_paths(run_dir: Path, tile_id: str) -> tuple[Path, Path]:
    """(current state file, folder of kept previous states) of a tile."""
    return run_dir / "state" / "current" / f"{tile_id}.nc", run_dir / "state" / "history" / tile_id


def kept_states(history_dir: Path) -> list[Path]:
    """Kept previous states, newest first (names sort by time)."""
    return sorted(history_dir.glob("*.nc"), reverse=True) if history_dir.exists() else []


def load_current(run_dir: Path, tile_id: str) -> tuple[TileState, str | None]:
    """A tile's current state, or the newest intact kept state if the current one is
    corrupt. Returns (state, name of the kept state used or None)."""
    current, history = state_paths(run_dir, tile_id)
    try:
        return load_state(current), None
    except StateCorruptError as err:
        log.error("%s", err)
        for kept in kept_states(history):
            try:
                state = load_state(kept)
            except StateCorruptError as err2:
                log.error("%s", err2)
                continue
            log.warning("tile %s: recovered from kept state %s", tile_id, kept.name)
            return state, kept.name
        raise


def commit_state(state: TileState, run_dir: Path, tile_id: str, keep: int) -> None:
    """Keep the current state in the tile's history (a hard link, no copy), write the new
    one atomically, and prune the history to the ``keep`` newest."""
    current, history = state_paths(run_dir, tile_id)
    history.mkdir(parents=True, exist_ok=True)
    if current.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        try:
            previous = load_state(current)
            name = f"{stamp}_{previous.last_day or 'fit'}.nc"
        except StateCorruptError:
            name = None  # never keep a corrupt file as a fallback
        if name and not (history / name).exists():
            os.link(current, history / name)
    save_state(state, current)
    for old in kept_states(history)[keep:]:
        old.unlink()


def dedupe_reprocessed(items: Sequence[pystac.Item]) -> tuple[list[pystac.Item], list[dict]]:
    """One item per datatake granule: for the same MGRS tile and sensing time, keep the
    newest processing baseline. Returns (kept, dropped records)."""
    best: dict[tuple, pystac.Item] = {}
    for it in items:
        key = (it.properties.get("s2:mgrs_tile"), it.datetime.replace(microsecond=0))
        old = best.get(key)
        baseline = str(it.properties.get("s2:processing_baseline", ""))
        if old is None or baseline > str(old.properties.get("s2:processing_baseline", "")):
            best[key] = it
    kept = sorted(best.values(), key=lambda i: (i.datetime, i.id))
    kept_ids = {i.id for i in kept}
    dropped = [{"item": i.id, "reason": "reprocessed duplicate of a newer baseline"}
               for i in items if i.id not in kept_ids]
    return kept, dropped


def assign_to_tiles(items: Sequence[pystac.Item], tiles: Sequence[Tile]) -> dict[str, list]:
    """Items whose footprint intersects each tile (tile outlines in lon/lat)."""
    outlines = {t.id: box(*t.bbox_lonlat()) for t in tiles}
    out: dict[str, list] = {t.id: [] for t in tiles}
    for it in items:
        footprint = shape(it.geometry)
        for tid, outline in outlines.items():
            if footprint.intersects(outline):
                out[tid].append(it)
    return out


def discover(cfg: dict, tiles: Sequence[Tile], start: dt.date, today: dt.date,
             catalog: str | None) -> tuple[dict[str, list], list[dict], int]:
    """One search over the AOI; returns (items per tile, dropped duplicates, items found)."""
    aoi = unary_union([box(*t.bbox_lonlat()) for t in tiles]).bounds
    found = _with_retries(lambda: search_items(cfg["stac"], aoi, start, today, catalog),
                          cfg["operational"], "STAC search")
    kept, dropped = dedupe_reprocessed(found)
    return assign_to_tiles(kept, tiles), dropped, len(found)


def _with_retries(call, op_cfg: dict, what: str):
    """Run ``call`` with exponential back-off on errors; re-raise after the last try."""
    attempts, delay = op_cfg["retries"] + 1, op_cfg["retry_delay_s"]
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - any source failure is retried
            if attempt == attempts:
                raise RuntimeError(f"{what} failed after {attempts} attempts: {err}") from err
            log.warning("%s failed (attempt %d/%d): %s; retrying in %.1f s", what, attempt,
                        attempts, err, delay)
            time.sleep(delay)
            clear_gdal_http_cache()  # else GDAL answers the retry with its cached failure
            delay *= 2


def update_tile(cfg: dict, run_dir: Path, tile: Tile, items: Sequence[pystac.Item],
                catalog: str | None, today: dt.date, dry_run: bool = False) -> TileUpdate:
    """Apply the items missing from the tile's ledger; write nothing if none or dry-run."""
    result = TileUpdate(tile.id)
    state, recovered = load_current(run_dir, tile.id)
    result.recovered_from = recovered
    applied = state.applied_items | set(state.metadata.get("history", {}).get("items", []))
    skipped_before = {s["item"] for s in state.metadata.get("skipped", [])}
    datatakes = {k for e in state.metadata.get("applied", []) for k in e.get("datatakes", [])}
    for it in items:
        if it.id not in applied and it.id not in skipped_before and datatake_key(it) in datatakes:
            rec = {"item": it.id, "reason": "reprocessed duplicate of an applied acquisition"}
            result.skipped.append(rec)
            state.metadata.setdefault("skipped", []).append(rec)
    new = [it for it in items if it.id not in applied and it.id not in skipped_before
           and datatake_key(it) not in datatakes]
    if not new and not recovered and not result.skipped:
        return result
    last = state.last_day or str(state.metadata["history"]["end"])
    late = [it for it in new if str(_solar_day(it)) <= last]
    if late and cfg["operational"]["late_items"] == "replay":
        base = _replay_base(run_dir, tile.id, min(str(_solar_day(i)) for i in late))
        if base is not None:
            state, name = base
            result.replayed_from = name
            # everything after the base state, from the source again, in date order
            start = state.last_day or str(state.metadata["history"]["end"])
            items = _with_retries(
                lambda: search_items(cfg["stac"], tile.bbox_lonlat(), start, today, catalog),
                cfg["operational"], f"tile {tile.id} replay search")
            done = state.applied_items
            new = [it for it in items if it.id not in done and str(_solar_day(it)) > start]
            late = []
    if dry_run:
        result.applied_items = [it.id for it in new if it not in late]
        result.skipped += [{"item": it.id, "reason": "late: older than last applied day"}
                           for it in late]
        return result
    before = int((state.monitor.mask == 3).sum())
    n_applied = len(state.metadata.get("applied", []))
    added = _with_retries(lambda: fast_forward(state, new, tile, cfg), cfg["operational"],
                          f"tile {tile.id} load")
    for entry in added:
        if "skipped" in entry:
            for item_id in entry["items"]:
                rec = {"item": item_id, "day": entry["day"],
                       "reason": f"late: {entry['skipped']} ({last})"}
                result.skipped.append(rec)
                state.metadata.setdefault("skipped", []).append(rec)
    # from the ledger, not `added`: days a failed earlier attempt applied are not in it
    for entry in state.metadata.get("applied", [])[n_applied:]:
        result.applied_days.append(entry["day"])
        result.applied_items += entry["items"]
    result.new_breaks = int((state.monitor.mask == 3).sum()) - before
    if result.applied_days or result.skipped or recovered or result.replayed_from:
        commit_state(state, run_dir, tile.id, cfg["operational"]["keep_states"])
    return result


def _solar_day(item: pystac.Item) -> dt.date:
    from .stac import solar_day

    return solar_day(item)


def _replay_base(run_dir: Path, tile_id: str, day: str) -> tuple[TileState, str] | None:
    """The newest intact kept (or current) state whose last applied day is before ``day``."""
    _, history = state_paths(run_dir, tile_id)
    for kept in kept_states(history):
        try:
            state = load_state(kept)
        except StateCorruptError:
            continue
        if (state.last_day or str(state.metadata["history"]["end"])) < day:
            return state, kept.name
    return None


def run_daily(cfg: dict, run_dir: str | Path, catalog: str | None, today: dt.date,
              dry_run: bool = False) -> dict:
    """Discover and apply new acquisitions for every tile; write and return the run record."""
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    # a fresh acquisition whose asset cannot be read yet (publication lag, provider outage)
    # fails its tile for this run and is retried by the next: skipping it would lose it
    cfg = {**cfg, "stac": {**cfg["stac"], "on_unreadable_asset": "fail"}}
    tiles = make_tiles(cfg)
    missing = [t.id for t in tiles if not state_paths(run_dir, t.id)[0].exists()]
    if missing:
        raise FileNotFoundError(
            f"no current state for tile(s) {', '.join(missing[:5])}; run `snakemake` first "
            "(fit and fast-forward), then the daily command."
        )
    lookback = today - dt.timedelta(days=cfg["operational"]["lookback_days"])
    oldest_last = min(_last_day(run_dir, t.id) for t in tiles)
    start = min(lookback, oldest_last + dt.timedelta(days=1))
    per_tile, dropped, found = discover(cfg, tiles, start, today, catalog)
    updates = []
    for tile in tiles:
        try:
            updates.append(update_tile(cfg, run_dir, tile, per_tile[tile.id], catalog, today,
                                       dry_run=dry_run))
        except Exception as err:  # noqa: BLE001 - one tile's failure must not stop the rest
            log.error("tile %s: update failed, state unchanged: %s", tile.id, err)
            updates.append(TileUpdate(tile.id, error=f"{type(err).__name__}: {err}"))
    record = {
        "today": str(today),
        "dry_run": dry_run,
        "window": [str(start), str(today)],
        "items_found": found,
        "duplicates_dropped": dropped,
        "tiles_updated": [u.tile_id for u in updates if u.applied_days or u.replayed_from],
        "items_applied": sum(len(u.applied_items) for u in updates),
        "new_confirmed_breaks": sum(u.new_breaks for u in updates),
        "tiles": {tid: info for tid, info in (
            (u.tile_id, {k: v for k, v in vars(u).items() if v and k != "tile_id"})
            for u in updates) if info},
        "failed_tiles": [u.tile_id for u in updates if u.error],
        "duration_s": round(time.perf_counter() - t0, 2),
    }
    if not dry_run:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        write_json(run_dir / "runs" / f"{stamp}_{today}.json", record)
    return record


def _last_day(run_dir: Path, tile_id: str) -> dt.date:
    state, _ = load_current(run_dir, tile_id)
    return dt.date.fromisoformat(state.last_day or str(state.metadata["history"]["end"]))


__all__ = ["run_daily", "discover", "update_tile", "dedupe_reprocessed", "commit_state",
           "load_current"]
