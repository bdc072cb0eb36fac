"""Work split into contiguous parts on threads: for compiled kernels that release the GIL
(numba ``nogil``), so that a job's ``threads`` share a pass over an array.

The one helper the cube's index (:func:`forestwatch.stac.spectral_index`) and the IQR
fit's passes (:mod:`forestwatch.monitor._iqr_fit`) share; each part is independent of
the others, so the split changes no result.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def in_parts(work: Callable[[int, int], object], size: int, threads: int, *,
             min_part: int = 1, name: str = "forestwatch-parts") -> None:
    """``work(first, last)`` over ``range(size)`` cut into up to ``threads`` contiguous
    parts of at least ``min_part`` items (one part when ``size`` is smaller), each in a
    thread of a pool named ``name``; returns when all are done (an error in one is
    raised)."""
    parts = max(1, min(threads, size // max(1, min_part)))
    edges = np.linspace(0, size, parts + 1).astype(int)
    with ThreadPoolExecutor(parts, thread_name_prefix=name) as pool:
        list(pool.map(lambda k: work(edges[k], edges[k + 1]), range(parts)))
