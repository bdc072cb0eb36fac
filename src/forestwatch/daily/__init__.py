"""The daily run (``forestwatch daily``, rules/daily.smk): discovery, per-tile updates as
Snakemake jobs, the run record.

* :mod:`.discover` - one search over the AOI, and which tiles have work;
* :mod:`.discovery` - :class:`Discovery`, what it found (``discovery.json``);
* :mod:`.record` - the run record from the tile records, and the exit status;
* :mod:`.run` - :func:`run_daily`: lock, discover, run the updates, record;
* :mod:`.retention` - the only code that deletes run files.

The update of one tile is :func:`forestwatch.steps.update_tile` (rule ``update_tile``),
which brings the state forward with :func:`forestwatch.monitor.advance_tile`.
"""

from .._lazy import lazy_attributes

_PUBLIC = {
    "Discovery": ".discovery", "discover": ".discover", "run_daily": ".run",
    "build_run_record": ".record", "exit_status": ".record", "EXIT_OK": ".record",
    "EXIT_FAILED": ".record", "EXIT_UNREADABLE": ".record",
}
__all__ = sorted(_PUBLIC)


__getattr__ = lazy_attributes(__name__, _PUBLIC)
