"""Discovery, the first step of a daily run: one STAC search over the whole AOI, then per
tile the acquisitions its state has not seen.

The window reaches back ``operational.lookback_days`` before today (to catch scenes
published late) and further, to the oldest tile's last monitored day (inclusive: a day
may be partly monitored, one granule applied and its neighbour published later). Older
acquisitions published since the last run (a granule published months late, a
reprocessing campaign) are found by a second search, on ``operational.published_property``:
items acquired between the fit's end and the window, published on or after the day
before the previous run's ``today`` (before the first run: ``lookback_days`` before
today). The newest version of each acquisition is kept (:func:`forestwatch.acquisitions.resolve_reprocessed`)
and assigned to the tiles its footprint touches. A tile has work when one of its
acquisitions is unknown to its ledger, or when it has no state yet (a tile added to the
AOI: the daily run's Snakemake fits it first).

Ledgers are read from the state files' attributes only (:func:`forestwatch.state.read_ledger`),
which costs milliseconds per tile; ``update_tile`` verifies the state when it loads it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pystac
import shapely
from shapely.geometry import shape

from ..access import clear_gdal_http_cache
from ..acquisitions import resolve_reprocessed, solar_day
from ..grid import Tile, lonlat_boxes
from ..io import write_json
from ..layout import RunLayout
from ..stac import search_items
from ..state import Ledger, read_ledger
from .discovery import Discovery
from .retention import last_run_day

log = logging.getLogger(__name__)


def with_retries(call: Callable, op_cfg: dict, what: str):
    """Run ``call`` with exponential back-off on errors (``operational.retries``,
    ``retry_delay_s``); re-raise after the last try, saying how many there were."""
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


def tile_ledgers(layout: RunLayout, tiles: Sequence[Tile]) -> dict[str, Ledger | None]:
    """Each tile's ledger from its current state's attributes (``None``: no state yet, or
    a state that cannot be read - its update will recover or fit it)."""
    out: dict[str, Ledger | None] = {}
    for tile in tiles:
        path = Path(layout.current_state(tile.id))
        try:
            out[tile.id] = read_ledger(path)[0] if path.exists() else None
        except (OSError, ValueError, KeyError) as err:
            log.error("tile %s: cannot read the ledger of %s (%s); its update will recover it",
                      tile.id, path, err)
            out[tile.id] = None
    return out


def assign_to_tiles(items: Sequence[pystac.Item], tiles: Sequence[Tile], *,
                    boxes: Sequence[tuple[float, float, float, float]] | None = None
                    ) -> dict[str, list]:
    """Items whose footprint intersects each tile's lon/lat box (``boxes``, from
    :func:`forestwatch.grid.lonlat_boxes` when not given), in the items' order. The boxes
    are looked up in a tree (``shapely.STRtree``): each item meets the tiles near it, where
    testing every tile made items x tiles intersections (10,000 tiles: BENCHMARKS.md, "The
    daily run's discovery for 10,000 tiles")."""
    boxes = lonlat_boxes(tiles) if boxes is None else boxes
    out: dict[str, list] = {t.id: [] for t in tiles}
    if not tiles:
        return out
    tree = shapely.STRtree(shapely.box(*np.asarray(boxes, dtype=np.float64).T))
    for it in items:
        for k in tree.query(shape(it.geometry), predicate="intersects"):
            out[tiles[k].id].append(it)
    return out


def discover(cfg: dict, layout: RunLayout, tiles: Sequence[Tile], *, run: str, today: dt.date,
             catalog: str | None) -> tuple[Discovery, list[pystac.Item]]:
    """Search once over the AOI and say which tiles have work; returns the discovery and
    the items found (newest versions only)."""
    op = cfg["operational"]
    ledgers = tile_ledgers(layout, tiles)
    until = dt.date.fromisoformat(str(cfg["fast_forward"]["until"]))
    last_days = [ledger.last_day if ledger else until for ledger in ledgers.values()]
    start = min([today - dt.timedelta(days=op["lookback_days"])] + last_days)
    boxes = lonlat_boxes(tiles)
    aoi = (min(b[0] for b in boxes), min(b[1] for b in boxes),  # the union's bounds
           max(b[2] for b in boxes), max(b[3] for b in boxes))
    found = with_retries(lambda: search_items(cfg["stac"], aoi, start, today, catalog), op,
                         "STAC search")
    published_window = _published_window(cfg, layout, ledgers, start=start, today=today)
    if published_window is not None:
        since = published_window[2]
        older = with_retries(lambda: search_items(
            cfg["stac"], aoi, published_window[0], published_window[1], catalog,
            published_since=since, published_property=op["published_property"]),
            op, "STAC search by publication time")
        seen = {it.id for it in found}
        found += [it for it in older if it.id not in seen]
    resolved = resolve_reprocessed(found)
    disc = Discovery(run=run, today=str(today), window=[str(start), str(today)],
                     items_found=len(found), duplicates_dropped=resolved.superseded,
                     published_window=None if published_window is None
                     else [str(d) for d in published_window])
    for tid, candidates in assign_to_tiles(resolved.kept, tiles, boxes=boxes).items():
        ledger = ledgers[tid]
        path = Path(layout.current_state(tid))
        candidates = [it for it in candidates if solar_day(it) <= today]
        unknown = [it for it in candidates if ledger is None or not ledger.is_known(it)]
        if ledger is not None and not unknown:
            disc.up_to_date.append(tid)
            continue
        disc.tiles[tid] = {
            "items": [it.id for it in candidates], "unknown": len(unknown),
            "state": "current" if ledger else ("unreadable" if path.exists() else "missing"),
        }
    log.info("discovery %s..%s: %d item(s), %d older version(s) dropped, %d of %d tile(s) "
             "with work", start, today, len(found), len(resolved.superseded), len(disc.tiles),
             len(tiles))
    return disc, resolved.kept


def _published_window(cfg: dict, layout: RunLayout, ledgers: dict[str, Ledger | None], *,
                      start: dt.date, today: dt.date
                      ) -> tuple[dt.date, dt.date, dt.date] | None:
    """(acquired from, acquired to, published since) of the search for old acquisitions
    published since the last run; ``None`` when ``operational.published_property`` is
    null or the window already reaches back to the fit."""
    op = cfg["operational"]
    if op["published_property"] is None:
        return None
    fit_ends = [dt.date.fromisoformat(ledger.fit.end) for ledger in ledgers.values() if ledger]
    first = min(fit_ends or [dt.date.fromisoformat(str(cfg["history"]["end"]))]) + dt.timedelta(days=1)
    last = start - dt.timedelta(days=1)
    if last < first:
        return None
    previous = last_run_day(layout)
    since = (min(previous, today) if previous else today - dt.timedelta(days=op["lookback_days"]))
    return first, last, since - dt.timedelta(days=1)


def write_discovery(layout: RunLayout, disc: Discovery, items: Sequence[pystac.Item]) -> None:
    """``runs/<run>/items.json`` (every item a tile with work needs, once) then
    ``runs/<run>/discovery.json``; the tile updates read both."""
    needed = {i for t in disc.tiles.values() for i in t["items"]}
    features = [it.to_dict(transform_hrefs=False) for it in items if it.id in needed]
    write_json(layout.discovered_items(disc.run),
               {"type": "FeatureCollection", "features": features})
    write_json(layout.discovery(disc.run), disc.to_dict())


def read_discovered_items(layout: RunLayout, disc: Discovery, tile_id: str
                          ) -> list[pystac.Item]:
    """The items discovery ``disc`` found for ``tile_id`` (from the run's ``items.json``).

    Not migrated again: :func:`write_discovery` wrote them from items pystac had read (and
    migrated) at the search; migrating looks up pystac's extension hooks, ~0.06 s of a
    tile's first update in a process."""
    wanted = set(disc.tiles.get(tile_id, {}).get("items", []))
    data = json.loads(Path(layout.discovered_items(disc.run)).read_text())
    return [pystac.Item.from_dict(f, migrate=False, preserve_dict=False)
            for f in data["features"] if f["id"] in wanted]


__all__ = ["Discovery", "discover", "write_discovery", "read_discovered_items",
           "assign_to_tiles", "tile_ledgers", "with_retries"]
