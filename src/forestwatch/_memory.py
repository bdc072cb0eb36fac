"""How a forestwatch process manages its memory: the C allocator's handling of freed
memory (:func:`keep_freed_memory`) and how often Python looks for reference cycles
(:func:`collect_cycles_less_often`).

A job allocates and frees arrays of a few MiB over and over: a state's arrays (1 to 8 MiB
each on 1000 x 1000 px), HDF5's chunk buffers while it reads and writes them, the day's
bands. glibc's malloc gives memory back to the kernel readily: an allocation above its
mmap threshold (128 KiB at first, raised as such blocks are freed) gets pages of its own,
unmapped when it is freed, and free memory at the top of a heap beyond the trim threshold
is returned. The next allocation then takes fresh pages, which the kernel zeroes
(``clear_page_erms``, the largest single item of a whole run's profile: 12-13 % of its
CPU; BENCHMARKS.md, "Freed memory kept for the next allocation").
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os
import platform

log = logging.getLogger(__name__)

#: glibc's ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: allocations up to this size come from malloc's heaps, whose freed memory the next
#: allocation reuses (glibc's largest: ``DEFAULT_MMAP_THRESHOLD_MAX`` on 64-bit)
MMAP_THRESHOLD = 32 * 2**20
#: free memory at the top of a heap that malloc keeps rather than returning it to the
#: kernel. Both must be set together: setting one turns glibc's adjustment of the other
#: off, and the trim threshold alone left every allocation above 128 KiB on fresh pages
#: (a daily update 0.29 -> 0.47 s)
TRIM_THRESHOLD = 256 * 2**20
#: glibc's environment variables for the same settings: an operator's are kept
_MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                     "MALLOC_MMAP_MAX_")
#: ``0`` leaves glibc's own behaviour (any of its variables would turn its adjustment of
#: the thresholds off, so none of them can ask for its defaults)
SWITCH = "FORESTWATCH_KEEP_FREED_MEMORY"


@functools.cache
def keep_freed_memory() -> bool:
    """Let this process's allocations up to :data:`MMAP_THRESHOLD` reuse freed memory
    instead of fresh pages, keeping up to :data:`TRIM_THRESHOLD` free at the top of each
    heap (once per process; :func:`forestwatch.workflow.run_job` calls it before each
    job, the CLI before its command). Returns whether it changed anything: not under
    another C library than glibc, not with ``FORESTWATCH_KEEP_FREED_MEMORY=0`` in the
    environment, nor when the environment sets glibc's own ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``MALLOC_MMAP_MAX_`` (the
    operator's settings are kept).

    On the 1000 x 1000 px benchmark tile a further tile's daily update went 0.27-0.31 ->
    0.25 s and the fit 8.5-9.0 -> 8.2-8.5 s in the same session; a process that ran several
    updates peaked 14 % higher (BENCHMARKS.md)."""
    if os.environ.get(SWITCH, "1") == "0" or any(name in os.environ
                                                  for name in _MALLOC_VARIABLES):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    if not done:
        log.warning("glibc's mallopt refused the thresholds; freed memory goes back to "
                    "the kernel as usual")
    return done


#: container allocations (net of deallocations) between two collections of Python's
#: youngest generation; Python's default is 700
GC_THRESHOLD = 10_000
#: an integer here replaces :data:`GC_THRESHOLD` (``700`` gives Python's default)
GC_SWITCH = "FORESTWATCH_GC_THRESHOLD"


@functools.cache
def collect_cycles_less_often() -> int:
    """Let Python's cyclic garbage collector run its youngest generation every
    :data:`GC_THRESHOLD` container allocations instead of every 700 (once per process,
    with :func:`keep_freed_memory`); returns the threshold now set.

    Why: the jobs run in the Snakemake process, whose heap holds ~150,000 objects before
    the first job (the plan, the modules) and more after each import. Each collection of
    the oldest generation walks all of them with the interpreter lock held, stopping every
    job's Python for up to 0.18 s: the demo's run spent 0.75-0.80 s in ~1,160 collections
    (7 of the oldest generation), the larger benchmark area's 0.82-0.88 s. With 10,000 it
    was 0.17-0.29 s, and both runs' peak memory stayed within 2 % (BENCHMARKS.md, "The
    chain"). Arrays are freed by their reference counts, not by this collector; cycles are
    still collected, only less often. The older generations keep Python's thresholds.
    ``FORESTWATCH_GC_THRESHOLD`` sets another one (``700``: Python's default; ``0`` turns
    the automatic collections off, as ``gc.set_threshold`` does)."""
    value = os.environ.get(GC_SWITCH, "")
    try:
        threshold = int(value) if value else GC_THRESHOLD
    except ValueError:
        threshold = -1
    if threshold < 0:
        log.warning("%s=%r is not a whole number >= 0; using %d", GC_SWITCH, value,
                    GC_THRESHOLD)
        threshold = GC_THRESHOLD
    gc.set_threshold(threshold, *gc.get_threshold()[1:])
    return threshold
