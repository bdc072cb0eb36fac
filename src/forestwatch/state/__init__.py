"""A tile's monitoring state: who reads and writes it.

* :mod:`forestwatch.state._netcdf` - the file format (:func:`save_state`, :func:`load_state`);
  a current or kept state takes the arrays monitoring leaves unchanged from the tile's
  fitted state (format 5), so it is read with it;
* :mod:`forestwatch.state.ledger` - the :class:`Ledger` of what the monitor has seen;
* :mod:`forestwatch.state.store` - :class:`TileStateStore`, the one writer of a tile's
  current state (``state/current/<tile>.nc``), its kept states and its register of
  unreadable assets. The paths come from :class:`forestwatch.layout.RunLayout`.

Writers: :func:`forestwatch.steps.fit` writes ``state/fitted/<tile>.nc``
(:func:`save_state`; rule ``tile_state``, which keeps it when its fit key matches);
:meth:`TileStateStore.commit` writes ``state/current/<tile>.nc``, called only by
:func:`forestwatch.monitor.advance_tile` (rule ``tile_state`` and the daily run's
``update_tile``). Readers: the reports, the daily discovery (:func:`read_ledger`), the STAC
catalog (:func:`read_provenance`) and tests.
"""

from ._netcdf import (
    FORMAT_VERSION,
    FittedStateChangedError,
    MonitorMember,
    Provenance,
    StateCorruptError,
    StateLayers,
    TileState,
    load_state,
    monitors_equal,
    read_layers,
    read_ledger,
    read_provenance,
    save_state,
    shared_with_fit,
    software_versions,
    state_digest,
)
from .ledger import AppliedDay, FitRecord, Ledger, Skip
from .store import TileStateStore

__all__ = [
    "FORMAT_VERSION", "StateCorruptError", "FittedStateChangedError", "TileState", "MonitorMember", "load_state", "save_state",
    "read_ledger", "read_provenance", "Provenance", "shared_with_fit", "read_layers", "StateLayers", "state_digest", "monitors_equal", "software_versions",
    "Ledger", "FitRecord", "AppliedDay", "Skip", "TileStateStore",
]
