"""The C allocator's handling of freed memory in a forestwatch process
(:func:`keep_freed_memory`).

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
