"""One STAC API search per block of tiles and period, shared by the tile jobs of a process.

Each tile's fit and fast-forward searched the API for its own footprint. With the jobs in
the Snakemake process (:mod:`forestwatch.jobs`) that was most of the searching a run did:
the demo area's 4 tiles made 8 searches of ~1.6 s, while one search per period over the
area returns the same items (BENCHMARKS.md). The workflow therefore registers its tiles
(:func:`share_searches`, in ``rules/common.smk``), and :func:`search_tile` then answers a
registered tile from its **block**'s search:

* a block is a square of tiles about :data:`BLOCK_M` wide (a Sentinel-2 granule is
  110 km), aligned to the grid; its search box is the lon/lat box around the registered
  tiles in it (never more than the area asks for);
* the block is searched once per period and STAC query and kept (the newest
  :data:`KEEP` searches, least recently used dropped first), by one thread while the
  others asking for it wait; searches of other periods or blocks run meanwhile;
* the tile keeps the items whose footprint intersects the tile's box
  (:func:`forestwatch.stac.item_over`): the same test the API applies to a tile's own
  search, so the items are the same.

A tile that is not registered (the daily discovery, the steps called on their own, the
tests) or a source other than ``stac_api`` searches as before, on its own. A job on a
cluster node runs one tile per Snakemake: there the block's search would cost more than
the tile's, so the workflow registers no tiles (``rules/common.smk``).

The registry and the kept searches are this process's; nothing is written to disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING

from .grid import Tile

if TYPE_CHECKING:  # the workflow imports this module when it parses: no pystac then
    import pystac

log = logging.getLogger(__name__)

#: width of a block of tiles, grid CRS metres (~ a Sentinel-2 granule)
BLOCK_M = 100_000.0
#: block searches kept in memory (one holds a block's items of one period: ~1,000 items,
#: ~10 MiB, for two years of Sentinel-2 over 100 km)
KEEP = 64
#: added around a block's lon/lat box, degrees (a box around tiles' boxes: rounding only)
_PAD_DEG = 1e-4


class SharedSearches:
    """The registered tiles' block searches (see the module docstring)."""

    def __init__(self, tiles: Sequence[Tile], *, block_m: float = BLOCK_M, keep: int = KEEP
                 ) -> None:
        self.tiles = {t.id: t for t in tiles}
        self.keep = keep
        size = max((t.bounds[2] - t.bounds[0] for t in tiles), default=block_m)
        #: tiles per block side
        self.per_side = max(1, int(block_m // size))
        self._members: dict[tuple[int, int], list[Tile]] = {}
        for t in tiles:
            self._members.setdefault(self.block_of(t), []).append(t)
        #: the block searches, made or being made (kept until :attr:`keep` newer ones)
        self._kept: OrderedDict[tuple, Future] = OrderedDict()
        self._lock = threading.Lock()
        #: searches made (each block, period and query once while kept)
        self.searches = 0

    def block_of(self, tile: Tile) -> tuple[int, int]:
        return tile.col // self.per_side, tile.row // self.per_side

    def covers(self, tile: Tile) -> bool:
        """Whether ``tile`` is one of the registered tiles (the same grid cell)."""
        return self.tiles.get(tile.id) == tile

    def block_bbox(self, block: tuple[int, int]) -> tuple[float, float, float, float]:
        """Lon/lat box around the registered tiles of ``block`` (densified, padded)."""
        members = self._members[block]
        bounds = (min(t.bounds[0] for t in members), min(t.bounds[1] for t in members),
                  max(t.bounds[2] for t in members), max(t.bounds[3] for t in members))
        x0, y0, x1, y1 = replace(members[0], bounds=bounds).bbox_lonlat()
        return (x0 - _PAD_DEG, y0 - _PAD_DEG, x1 + _PAD_DEG, y1 + _PAD_DEG)

    def items(self, stac_cfg: dict, tile: Tile, start, end) -> list[pystac.Item]:
        """The items of ``tile`` with start <= datetime <= end (whole days, UTC), as
        :func:`forestwatch.stac.search_items` over the tile's box returns them."""
        from .stac import item_over, search_items

        block = self.block_of(tile)
        key = (stac_cfg["url"], stac_cfg["collection"], stac_cfg["max_cloud_cover"], block,
               str(start), str(end))
        # one search per key: the first tile to ask makes it, the others asking for the
        # same key wait for its items; searches of other keys (another period, another
        # block) go on at the same time (a tile's fit and its fast-forward search ahead)
        with self._lock:
            search = self._kept.get(key)
            shared = search is not None
            if shared:
                self._kept.move_to_end(key)
            else:
                search = self._kept[key] = Future()
                self.searches += 1
                while len(self._kept) > self.keep:
                    self._kept.popitem(last=False)
        if not shared:
            try:
                search.set_result(search_items(stac_cfg, self.block_bbox(block), start, end))
            except BaseException as err:
                with self._lock:  # not kept: the next tile asking searches again
                    if self._kept.get(key) is search:
                        del self._kept[key]
                search.set_exception(err)
                raise
        found = search.result()
        began = time.perf_counter()
        bbox = tile.bbox_lonlat()
        mine = [it for it in found if item_over(it, bbox)]
        log.info("tile %s: %d of the %d items %s block %s's search (%s..%s) in %.2f s",
                 tile.id, len(mine), len(found), "kept from" if shared else "found by",
                 block, start, end, time.perf_counter() - began)
        return mine


_SHARED: SharedSearches | None = None


def share_searches(tiles: Sequence[Tile], *, block_m: float = BLOCK_M, keep: int = KEEP
                   ) -> SharedSearches:
    """Register ``tiles`` (the run's): their searches are shared by block from now on in
    this process. Registering again replaces the registry and forgets kept searches."""
    global _SHARED
    _SHARED = SharedSearches(tiles, block_m=block_m, keep=keep)
    return _SHARED


def stop_sharing() -> None:
    """Forget the registry: every tile searches on its own again."""
    global _SHARED
    _SHARED = None


def search_tile(stac_cfg: dict, tile: Tile, start, end, catalog_path=None
                ) -> list[pystac.Item]:
    """The items over ``tile`` (see :func:`forestwatch.stac.search_items`): from its
    block's shared search when the tile is registered and the source is a STAC API,
    otherwise from a search of its own."""
    from .stac import search_items

    shared = _SHARED
    if stac_cfg["source"] == "stac_api" and shared is not None and shared.covers(tile):
        return shared.items(stac_cfg, tile, start, end)
    return search_items(stac_cfg, tile.bbox_lonlat(), start, end, catalog_path)


__all__ = ["SharedSearches", "share_searches", "stop_sharing", "search_tile", "BLOCK_M",
           "KEEP"]
