"""The daily run (``forestwatch daily``, rules/daily.smk): discovery, per-tile updates as
Snakemake jobs, the run record.

* :mod:`.discover` - one search over the AOI, and which tiles have work;
* :mod:`.record` - the run record from the tile records, and the exit status;
* :mod:`.run` - :func:`run_daily`: lock, discover, run the updates, record.

The update of one tile is :func:`forestwatch.steps.update_tile` (rule ``update_tile``),
which brings the state forward with :func:`forestwatch.monitor.advance_tile`.
"""

from .discover import Discovery, discover
from .record import EXIT_FAILED, EXIT_OK, EXIT_UNREADABLE, build_run_record, exit_status
from .run import run_daily

__all__ = ["run_daily", "discover", "Discovery", "build_run_record", "exit_status",
           "EXIT_OK", "EXIT_FAILED", "EXIT_UNREADABLE"]
