"""The process's pyproj transformations, each made once (:data:`PROJ`): used by the asset
reader (:mod:`forestwatch._assets`), the grid's lon/lat boxes
(:func:`forestwatch.grid.lonlat_boxes`) and the STAC catalog's footprints."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


class ProjThread:
    """Coordinate transformations made in one thread kept for the process.

    Creating a pyproj ``Transformer`` costs ~0.2 s (PROJ looks its operation up in its
    database), and pyproj creates it again in every thread that uses it. The reader's
    threads live for one load, so every load paid it once per source grid: 0.6 s of a
    demo tile's 7 s job, ~0.4 s of a daily update (BENCHMARKS.md, "Per-call costs"). This
    thread keeps one transformer per CRS pair for the life of the process. A process
    forked from this one starts a thread of its own (checked by process id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._transformers: dict = {}  # used in the thread only

    def transform(self, src_wkt: str, dst_wkt: str, x, y) -> tuple:
        """``(x, y)`` (arrays, east and north whatever ``src_wkt``'s axis order) in
        ``dst_wkt`` (east, north: ``always_xy``). The CRSs as WKT, or any string pyproj
        reads ("EPSG:3035")."""
        with self._lock:
            if self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="forestwatch-proj")
                self._pid, self._transformers = os.getpid(), {}
            pool = self._pool
        return pool.submit(self._transform, src_wkt, dst_wkt, x, y).result()

    def _transform(self, src_wkt: str, dst_wkt: str, x, y) -> tuple:
        transformer = self._transformers.get((src_wkt, dst_wkt))
        if transformer is None:
            from pyproj import Transformer

            transformer = self._transformers[(src_wkt, dst_wkt)] = Transformer.from_crs(
                src_wkt, dst_wkt, always_xy=True)
        return transformer.transform(x, y)


#: the process's transformations (:class:`ProjThread`)
PROJ = ProjThread()
