"""Fitting a tile's monitor and bringing it forward (rule ``tile_state``, and the daily
run's ``update_tile``).

* :mod:`.build` - the nrt monitor from config (one per consensus member), the bands it
  needs, its fit (:func:`fit_monitor`), numba's cache;
* :mod:`._iqr_fit` - nrt's IQR fit with its quantiles for the monitored pixels only, on
  every core (the same arrays);
* :mod:`.fit` - :func:`fit_tile`: the history, block by block; :func:`fit_key`: what a
  fit is made from, to keep it when that did not change;
* :mod:`.forward` - :func:`monitor_days`: solar days in order into a state, with the
  policy for unreadable assets;
* :mod:`.regressors` - nrt's regressors and ``predict(date)`` without its pandas calls;
* :mod:`.advance` - :func:`advance_tile`: the one code path that brings a tile's current
  state forward (plan against the ledger, replay, commit).
"""

from .advance import Plan, TileUpdate, advance_tile, forward_items, plan_update
from .build import (
    build_monitor,
    consensus_k,
    fit_kwargs,
    fit_monitor,
    member_configs,
    needed_bands,
    warm_numba_cache,
)
from .fit import fit_key, fit_tile
from .forward import FF_BATCH_BUDGET, Forwarded, UnreadablePolicy, monitor_days, take_observation

__all__ = [
    "advance_tile", "forward_items", "plan_update", "Plan", "TileUpdate",
    "build_monitor", "fit_kwargs", "fit_monitor", "needed_bands", "warm_numba_cache", "member_configs",
    "consensus_k",
    "fit_key", "fit_tile", "monitor_days", "take_observation", "UnreadablePolicy", "Forwarded", "FF_BATCH_BUDGET",
]
