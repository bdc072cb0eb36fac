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

import importlib

_PUBLIC = {
    "Discovery": ".discovery", "discover": ".discover", "run_daily": ".run",
    "build_run_record": ".record", "exit_status": ".record", "EXIT_OK": ".record",
    "EXIT_FAILED": ".record", "EXIT_UNREADABLE": ".record",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    """Import the module of a public name when it is first used: the Snakefile imports
    parts of this package at every parse, and needs none of the heavy ones."""
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module, __name__), name)
