"""Bring one tile's state forward: the single code path behind rule ``tile_state`` and
the daily run's ``update_tile``.

:func:`advance_tile` starts from the tile's current state (or its fitted state when there
is none yet), compares the candidate acquisitions with the state's ledger
(:func:`plan_update`), and monitors the new solar days in order
(:func:`forestwatch.monitor.forward.monitor_days`). It commits through
:class:`forestwatch.state.TileStateStore`, the only writer of ``state/current``.

What it never does is rewind: a current state is replaced only by one that has seen
everything it had seen, plus more. In particular:

* a **late** acquisition (its day is not after the last monitored day, e.g. a granule
  published days after its neighbour of the same day) and a **reprocessed** version of
  an applied acquisition (a newer processing baseline) are, with ``replay`` (the
  defaults of ``operational.late_items`` and ``operational.reprocessed_items``), applied
  by restarting from the newest kept state before their day and monitoring everything
  after it again, from the source, in date order: the result is the state one
  fast-forward over the final catalog gives. With ``skip`` they are recorded as skipped;
* a **refit** (the fitted state's digest differs from the one the current state was
  brought forward from) rebuilds the state from the new fit, as far as the old state had
  come (``max(until, last monitored day)``), re-reading every acquisition since the fit;
* a current state **past** ``until`` (the daily runs brought it further than
  ``fast_forward.until``) is left as it is by rule ``tile_state``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pystac
import xarray as xr

from ..acquisitions import acquisition_key, resolve_reprocessed, solar_day, version_label
from ..alerts.ladder import CONFIRMED
from ..grid import Tile
from ..stac import load_reflectance
from ..state import Ledger, Skip, StateCorruptError, TileState, TileStateStore
from .forward import ReadAhead, UnreadablePolicy, monitor_days

log = logging.getLogger(__name__)

#: days since 1970-01-01 of a date (nrt's detection_date unit)
_EPOCH = dt.date(1970, 1, 1)


@dataclass
class Plan:
    """What :func:`plan_update` found for one state."""

    #: new solar days after the state's last day, in order
    to_apply: dict[dt.date, list[pystac.Item]] = field(default_factory=dict)
    #: earliest day that needs a replay (a late or reprocessed acquisition), if any
    replay_from: dt.date | None = None
    #: ``{"item", "day", "reason"}`` of what asks for the replay
    replay_for: list[dict] = field(default_factory=list)
    #: items to record as skipped
    skips: list[Skip] = field(default_factory=list)


def plan_update(ledger: Ledger, items: Sequence[pystac.Item], end: dt.date, *,
                late_items: str, reprocessed_items: str, run: str) -> Plan:
    """Sort ``items`` against a state's ``ledger``: what to monitor next, what needs a
    replay, what to record as skipped. Items already known to the ledger and items after
    ``end`` are left out; of several versions of one acquisition only the newest counts."""
    applied = ledger.applied_acquisitions
    last = ledger.last_day
    plan = Plan()
    to_apply: dict[dt.date, list[pystac.Item]] = defaultdict(list)
    for it in resolve_reprocessed(items).kept:
        day = solar_day(it)
        if ledger.is_known(it) or day > end:
            continue
        if str(day) <= ledger.fit.end:
            plan.skips.append(Skip(item=it.id, day=str(day), run=run, reason=(
                f"acquired in the fit period (up to {ledger.fit.end}); the fit does not "
                "change after the fact: refit the tile to use it")))
            continue
        previous = applied.get(acquisition_key(it))
        if previous is not None:
            prev_id, prev_version = previous
            if version_label(it) <= prev_version:
                plan.skips.append(Skip(item=it.id, day=str(day), run=run,
                                       reason=f"older version of applied {prev_id}"))
            elif reprocessed_items == "replay":
                plan.replay_for.append({"item": it.id, "day": str(day),
                                        "reason": f"reprocessed version of applied {prev_id}"})
            else:
                plan.skips.append(Skip(item=it.id, day=str(day), run=run, reason=(
                    f"reprocessed version of applied {prev_id}; the applied version is kept "
                    "(operational.reprocessed_items: skip)")))
            continue
        if day <= last:
            if late_items == "replay":
                plan.replay_for.append({"item": it.id, "day": str(day), "reason": (
                    f"late: acquired {day}, not after the last monitored day {last}")})
            else:
                plan.skips.append(Skip(item=it.id, day=str(day), run=run, reason=(
                    f"late: acquired {day}, not after the last monitored day {last} "
                    "(operational.late_items: skip)")))
            continue
        to_apply[day].append(it)
    plan.to_apply = {d: to_apply[d] for d in sorted(to_apply)}
    if plan.replay_for:
        plan.replay_from = min(dt.date.fromisoformat(r["day"]) for r in plan.replay_for)
    return plan


@dataclass
class TileUpdate:
    """What bringing one tile forward did (a daily run's tile record)."""

    tile_id: str
    run: str
    #: days monitored for the first time, and the items applied for the first time
    applied_days: list[str] = field(default_factory=list)
    applied_items: list[str] = field(default_factory=list)
    #: days monitored again by a replay (they were in the state before)
    reapplied_days: list[str] = field(default_factory=list)
    #: items recorded as skipped, ``{"item", "day", "reason"}``
    skipped: list[dict] = field(default_factory=list)
    #: assets given up on after the grace period (applied as not observed)
    assets_skipped: list[dict] = field(default_factory=list)
    #: the tile stopped before this day, waiting for unreadable assets (grace period)
    waiting_since: str | None = None
    waiting_for: list[dict] = field(default_factory=list)
    replayed_from: str | None = None
    replay_for: list[dict] = field(default_factory=list)
    recovered_from: str | None = None
    rebuilt_from_fit: bool = False
    #: pixels whose break was confirmed on one of ``applied_days``
    new_breaks: int = 0
    last_day: str = ""
    state_written: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def advance_tile(
    store: TileStateStore,
    tile: Tile,
    cfg: dict,
    *,
    run: str,
    until: dt.date,
    policy: UnreadablePolicy,
    search: Callable[[dt.date, dt.date], list[pystac.Item]],
    items: Sequence[pystac.Item] | None = None,
    loader: Callable[..., xr.Dataset] = load_reflectance,
    threads: int = 1,
    dry_run: bool = False,
) -> TileUpdate:
    """Bring ``tile``'s state forward to ``until`` (see the module docstring).

    ``items`` are the candidate acquisitions (the daily discovery's, for this tile); when
    ``None``, or when the state to start from is older than they reach, ``search(start,
    end)`` (whole days, the tile's footprint) finds them. ``run`` names who applies the
    days (``fast_forward`` or a daily run id) in the ledger. Nothing is written with
    ``dry_run``.

    With ``items`` and a current state, the first batch of new days is read while the
    state is loaded (:class:`~forestwatch.monitor.forward.ReadAhead`).
    """
    fresh = not store.has_current()  # the first state is written even with nothing to apply
    ahead = None if fresh or items is None or dry_run else _read_ahead(
        store, items, until, tile, cfg, run=run, loader=loader, threads=threads)
    try:
        return _advance(store, tile, cfg, run=run, until=until, policy=policy, search=search,
                        items=items, loader=loader, threads=threads, dry_run=dry_run,
                        fresh=fresh, ahead=ahead)
    finally:
        if ahead is not None:
            ahead.close()


def _read_ahead(store: TileStateStore, items: Sequence[pystac.Item], until: dt.date,
                tile: Tile, cfg: dict, *, run: str, loader: Callable[..., xr.Dataset],
                threads: int) -> ReadAhead | None:
    """The read of the first new days, planned from the current state's ledger as its
    file's attributes say (cheap, not verified); ``None`` when that plan replays or has
    nothing to read, or the attributes cannot be read (the state's load then says why)."""
    try:
        ledger = store.peek_current_ledger()
    except (OSError, ValueError, KeyError):
        return None
    op = cfg["operational"]
    plan = plan_update(ledger, items, until, late_items=op["late_items"],
                       reprocessed_items=op["reprocessed_items"], run=run)
    if plan.replay_from is not None or not plan.to_apply:
        return None
    return ReadAhead(plan.to_apply, tile, cfg, loader=loader, threads=threads)


def _advance(store: TileStateStore, tile: Tile, cfg: dict, *, run: str, until: dt.date,
             policy: UnreadablePolicy, search: Callable[[dt.date, dt.date], list[pystac.Item]],
             items: Sequence[pystac.Item] | None, loader: Callable[..., xr.Dataset],
             threads: int, dry_run: bool, fresh: bool, ahead: ReadAhead | None) -> TileUpdate:
    """:func:`advance_tile`, its read ahead started."""
    op = cfg["operational"]
    result = TileUpdate(tile_id=tile.id, run=run)
    fitted_digest = store.fitted_digest()
    if not fresh:
        try:
            state, result.recovered_from = store.load_current()
            reached = state.ledger
        except StateCorruptError as err:  # of an earlier fit (its arrays went with it)?
            reached = _earlier_fit_ledger(store, fitted_digest, err)
        if not reached.descends_from(fitted_digest):
            until = max(until, reached.last_day)
            log.warning("tile %s: the fit changed since this state was brought forward; "
                        "rebuilding it from the new fit up to %s, every acquisition since "
                        "the fit read again", tile.id, until)
            state = _fresh_from_fit(store, fitted_digest)
            result.rebuilt_from_fit = True
    else:
        state = _fresh_from_fit(store, fitted_digest)
    before, before_last = state, state.ledger.last_day
    # what the state had from other runs (an earlier, killed attempt of this run counts
    # as this run's): the rest is new, what a replay re-applies of it is not
    other_runs_days = {e.day for e in before.ledger.applied if e.run != run}
    other_runs_items = {i for e in before.ledger.applied if e.run != run for i in e.items}
    if items is None or fresh or result.recovered_from or result.rebuilt_from_fit:
        start = state.ledger.last_day  # inclusive: a day may be partly monitored
        items = _union(items or [], search(start, until) if start <= until else [])
    late, reprocessed = op["late_items"], op["reprocessed_items"]
    plan = plan_update(state.ledger, items, until, late_items=late,
                       reprocessed_items=reprocessed, run=run)
    if plan.replay_from is not None:
        base = store.base_before(plan.replay_from, fitted_digest, state.ledger)
        if base is None:  # cannot happen for days after the fit; never lose them silently
            raise RuntimeError(f"tile {tile.id}: no kept state before {plan.replay_from} to "
                               "replay from, and the fitted state ends after it")
        base_state, result.replayed_from = base
        result.replay_for = plan.replay_for
        log.info("tile %s: replaying from %s (last day %s) for %s", tile.id,
                 result.replayed_from, base_state.ledger.last_day,
                 ", ".join(f"{r['item']} ({r['reason']})" for r in plan.replay_for))
        items = _union(items, search(base_state.ledger.last_day, until))
        plan = plan_update(base_state.ledger, items, until, late_items=late,
                           reprocessed_items=reprocessed, run=run)
        applying = {it.id for day in plan.to_apply.values() for it in day}
        for skip in state.ledger.skipped:  # what the newer state had recorded still holds
            if skip.item not in applying:
                base_state.ledger.record_skip(skip)
        state = base_state
    new_skips = [s for s in plan.skips if state.ledger.record_skip(s)]
    result.skipped = [{"item": s.item, "day": s.day, "reason": s.reason} for s in new_skips]
    if dry_run:
        result.applied_days = [str(d) for d in plan.to_apply if str(d) not in other_runs_days]
        result.reapplied_days = [str(d) for d in plan.to_apply if str(d) in other_runs_days]
        result.applied_items = [it.id for day in plan.to_apply.values() for it in day
                                if it.id not in other_runs_items]
        result.last_day = str(state.ledger.last_day)
        return result
    if policy.mode == "grace":  # a replay does not wait again for what was given up
        policy.given_up |= {f"{r['item']}|{r['asset']}" for e in before.ledger.applied
                            for r in e.unreadable}
    forwarded = monitor_days(state, plan.to_apply, tile, cfg, run=run, policy=policy,
                             loader=loader, threads=threads, read_ahead=ahead)
    result.assets_skipped = forwarded.assets_skipped
    result.waiting_since, result.waiting_for = forwarded.waiting_since, forwarded.waiting_for
    rewinds = state.ledger.last_day < before_last and not result.rebuilt_from_fit
    if rewinds:
        # a replay that had to stop (an unreadable asset within its grace period) would
        # end before the current state: keep the current one and try again next run
        log.warning("tile %s: the replay stopped at %s, before the current state's last day "
                    "%s; the current state is kept and the replay retried next run", tile.id,
                    state.ledger.last_day, before_last)
        state = before
    elif (fresh or forwarded.applied or new_skips or result.recovered_from
          or result.replayed_from or result.rebuilt_from_fit):
        store.commit(state)
        result.state_written = True
    if policy.mode == "grace":
        store.write_register(policy.register)
    for entry in state.ledger.applied_by(run):
        (result.reapplied_days if entry.day in other_runs_days else result.applied_days
         ).append(entry.day)
        result.applied_items += [i for i in entry.items if i not in other_runs_items]
    result.new_breaks = _breaks_confirmed_on(state, result.applied_days)
    result.last_day = str(state.ledger.last_day)
    return result


def forward_items(state: TileState, items: Sequence[pystac.Item], tile: Tile, cfg: dict, *,
                  run: str = "fast_forward", until: dt.date | None = None,
                  loader: Callable[..., xr.Dataset] = load_reflectance, threads: int = 1
                  ) -> tuple[Plan, list]:
    """Monitor the new days among ``items`` on an in-memory state, with no store and no
    replay (late and reprocessed acquisitions are recorded as skipped; unreadable assets
    follow ``stac.on_unreadable_asset``). For benchmarks and tests that compare monitors;
    the workflow brings states forward with :func:`advance_tile`. Returns the plan and
    the :class:`~forestwatch.state.AppliedDay` entries added."""
    end = until or max((solar_day(it) for it in items), default=state.ledger.last_day)
    plan = plan_update(state.ledger, items, end, late_items="skip", reprocessed_items="skip",
                       run=run)
    for skip in plan.skips:
        state.ledger.record_skip(skip)
    forwarded = monitor_days(state, plan.to_apply, tile, cfg, run=run, loader=loader,
                             threads=threads, policy=UnreadablePolicy.from_stac(cfg["stac"]))
    return plan, forwarded.applied


def _earlier_fit_ledger(store: TileStateStore, fitted_digest: str,
                        err: StateCorruptError) -> Ledger:
    """The ledger of the tile's newest state whose attributes can be read (the current
    one, else a kept one), when it descends from an earlier fit: such a state takes its
    arrays from a fitted state that was replaced (format 5), so it cannot be loaded, and
    :func:`_advance` rebuilds it from the new fit. ``err`` again when that ledger is of
    this very fit (a damaged state or fitted state, not a refit) or none can be read."""
    for ledger in store.peek_ledgers():
        if ledger.descends_from(fitted_digest):
            raise err
        return ledger
    raise err


def _fresh_from_fit(store: TileStateStore, fitted_digest: str) -> TileState:
    state = store.load_fitted()
    state.ledger.fitted_from = fitted_digest
    return state


def _union(a: Sequence[pystac.Item], b: Sequence[pystac.Item]) -> list[pystac.Item]:
    seen = {it.id: it for it in a}
    for it in b:
        seen.setdefault(it.id, it)
    return sorted(seen.values(), key=lambda i: (i.datetime, i.id))


def _breaks_confirmed_on(state: TileState, days: list[str]) -> int:
    """Pixels whose alert was confirmed on one of ``days`` (the tile's alert layers: the
    monitor's confirmation, or a consensus's)."""
    if not days:
        return 0
    ordinals = [(dt.date.fromisoformat(d) - _EPOCH).days for d in days]
    confirmed = (state.alerts.status == CONFIRMED) & np.isin(state.alerts.confirmed_date,
                                                              ordinals)
    return int(confirmed.sum())


__all__ = ["advance_tile", "forward_items", "plan_update", "Plan", "TileUpdate"]
