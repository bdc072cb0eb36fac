"""A job's threads: work split into contiguous parts on threads (:func:`in_parts`), and
BLAS kept on the threads that call it (:func:`one_blas_thread`).

:func:`in_parts` is for compiled kernels that release the GIL (numba ``nogil``), so that
a job's ``threads`` share a pass over an array: the one helper the cube's index
(:func:`forestwatch.stac.spectral_index`) and the IQR fit's passes
(:mod:`forestwatch.monitor._iqr_fit`) share; each part is independent of the others, so
the split changes no result.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: environment variables that set BLAS's own thread count; an operator's setting is kept
_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@functools.cache
def one_blas_thread() -> None:
    """Let every BLAS call of this process run on the thread that makes it (once per
    process; :func:`forestwatch.workflow.run_job` calls it before each job, the CLI before
    its command).

    A job already spreads its work over its ``threads`` (the reader's threads, the rule
    mask's strips, :func:`in_parts`); numpy's OpenBLAS would start a pool of its own per
    core on top, whose threads spin between calls on the cores the job's threads need. On
    a 1000 x 1000 px tile, 2 cores, one BLAS thread made the rule mask 17.1 -> 14.8 s and
    the fit 8.8 -> 8.1 s (BENCHMARKS.md, "One BLAS thread per caller"). Libraries loaded
    now are limited through threadpoolctl, those loaded later (scipy's own OpenBLAS) by
    ``OPENBLAS_NUM_THREADS``, which OpenBLAS reads when it loads. When the environment
    sets ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``, BLAS is
    left as the operator set it (two first calls at once are harmless: the second finds
    the variable the first set)."""
    if not any(name in os.environ for name in _BLAS_THREAD_VARIABLES):
        from threadpoolctl import threadpool_limits

        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        threadpool_limits(1, user_api="blas")


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
