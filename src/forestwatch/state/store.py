"""The one writer of a tile's monitoring state.

``state/current/<tile>.nc`` is written by :meth:`TileStateStore.commit` and nothing else:
rule ``tile_state`` and the daily run's ``update_tile`` both bring a state forward
through :func:`forestwatch.monitor.advance_tile`, which commits here. The caller holds the
run lock (:mod:`forestwatch.runlock`), so at most one process writes a tile at a time.

A commit keeps the state it replaces in ``state/history/<tile>/`` (a hard link, no copy;
``<UTC time>_<last monitored day>.nc``, pruned to ``operational.keep_states``): a
late acquisition can be replayed from a state before it, and a current state found
corrupt is replaced by the newest intact kept one. The fitted state
(``state/fitted/<tile>.nc``, :func:`forestwatch.steps.fit`) is only ever read here; the
current and kept states take the arrays monitoring leaves unchanged from it (``share_with``
of :func:`~forestwatch.state.save_state`), so a commit writes and keeps only what changed.

The store also keeps the tile's *unreadable-asset register* (``state/unreadable/<tile>.json``):
assets the daily run could not read yet, since which day and in how many runs, so that a
transient outage is waited out and a permanently broken asset is given up on after the
grace period (``operational.unreadable_assets``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ..io import write_json
from ..layout import RunLayout
from ._netcdf import (
    FittedStateChangedError,
    StateCorruptError,
    TileState,
    load_state,
    load_verified,
    read_ledger,
    save_state,
    state_digest,
)
from .ledger import Ledger

log = logging.getLogger(__name__)


class TileStateStore:
    """A tile's fitted, current and kept states and its unreadable-asset register."""

    def __init__(self, layout: RunLayout, tile_id: str, keep: int = 10) -> None:
        self.tile_id = tile_id
        self.keep = keep
        self.fitted_path = Path(layout.fitted_state(tile_id))
        self.current_path = Path(layout.current_state(tile_id))
        self.kept_dir = Path(layout.kept_states(tile_id))
        self.register_path = Path(layout.unreadable_register(tile_id))
        self._verified: str | None = None  # digest of the current file this store verified

    # -- reading -------------------------------------------------------------------------
    def has_current(self) -> bool:
        return self.current_path.exists()

    def load_fitted(self) -> TileState:
        if not self.fitted_path.exists():
            raise FileNotFoundError(
                f"tile {self.tile_id} has no fitted state ({self.fitted_path}); run `snakemake` "
                "(rules forest_mask and fit) first.")
        return load_state(self.fitted_path)

    def fitted_digest(self) -> str:
        return state_digest(self.fitted_path)

    def peek_current_ledger(self) -> Ledger:
        """The current state's ledger from the file's attributes alone: cheap (no array is
        read) and **not verified** (:meth:`load_current` verifies). For planning what to
        read while the state loads (:class:`forestwatch.monitor.forward.ReadAhead`)."""
        return read_ledger(self.current_path)[0]

    def peek_ledgers(self) -> Iterator[Ledger]:
        """The ledgers of the current state, then of the kept states newest first, from
        the files' attributes alone (**not verified**), passing over files whose
        attributes cannot be read: what a state that cannot be loaded had reached."""
        for path in [self.current_path, *self.kept()]:
            try:
                yield read_ledger(path)[0]
            except (OSError, ValueError, KeyError):
                continue

    def kept(self) -> list[Path]:
        """Kept previous states, newest first (their names sort by time)."""
        return sorted(self.kept_dir.glob("*.nc"), reverse=True) if self.kept_dir.exists() else []

    def load_current(self) -> tuple[TileState, str | None]:
        """The current state, or the newest intact kept state when the current one is
        corrupt. Returns (state, name of the kept state used or None); raises
        :class:`StateCorruptError` when no intact state is left, and
        :class:`FittedStateChangedError` when the current state belongs to an earlier fit
        (its kept states do too)."""
        try:
            state, self._verified = load_verified(self.current_path, fitted=self.fitted_path)
            return state, None
        except FittedStateChangedError:
            raise
        except StateCorruptError as err:
            log.error("%s", err)
            for kept in self.kept():
                try:
                    state = load_state(kept, fitted=self.fitted_path)
                except StateCorruptError as err2:
                    log.error("%s", err2)
                    continue
                log.warning("tile %s: recovered from kept state %s", self.tile_id, kept.name)
                return state, kept.name
            raise

    def base_before(self, day: dt.date, fitted_digest: str, current: Ledger
                    ) -> tuple[TileState, str] | None:
        """The newest intact state to replay from for ``day``: its last monitored day is
        before ``day``, it was brought forward from this fit, and its days are the first
        days of ``current`` (a kept state that an earlier replay superseded - it lacks an
        acquisition the current state has - is passed over). A kept state, else the fitted
        state itself (named ``fit``); ``None`` when neither qualifies."""
        for kept in self.kept():
            try:
                ledger, _ = read_ledger(kept)
            except OSError:
                continue
            if (ledger.last_day < day and ledger.descends_from(fitted_digest)
                    and current.starts_with(ledger)):
                try:
                    return load_state(kept, fitted=self.fitted_path), kept.name
                except StateCorruptError as err:
                    log.error("%s", err)
        fitted = self.load_fitted()
        if fitted.ledger.last_day < day:
            fitted.ledger.fitted_from = fitted_digest
            return fitted, "fit"
        return None

    # -- writing -------------------------------------------------------------------------
    def commit(self, state: TileState) -> str:
        """Write ``state`` as the tile's current state, atomically; keep the state it
        replaces (when intact) and prune the kept states. Returns the content digest."""
        self._remove_stale_temporaries()
        self.kept_dir.mkdir(parents=True, exist_ok=True)
        if self.current_path.exists():
            previous = self._intact_current_ledger()
            if previous is not None:
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
                kept = self.kept_dir / f"{stamp}_{previous.last_day}.nc"
                if not kept.exists():
                    os.link(self.current_path, kept)
        digest = save_state(state, self.current_path,
                            share_with=self.fitted_path if self.fitted_path.exists() else None)
        self._verified = digest
        for old in self.kept()[self.keep:]:
            old.unlink()
        return digest

    def _intact_current_ledger(self):
        """The ledger of the current file if it is intact (never keep a corrupt file)."""
        try:
            ledger, digest = read_ledger(self.current_path)
        except OSError:
            return None
        if digest == self._verified:
            return ledger
        try:
            load_state(self.current_path, fitted=self.fitted_path)
        except StateCorruptError:
            return None
        return ledger

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of this tile's state left by a killed write (see
        :func:`forestwatch.io.atomic_path`). The run lock guarantees no other writer, so
        any that exist are debris."""
        folder = self.current_path.parent
        if not folder.exists():
            return
        for tmp in folder.glob(f".{self.current_path.stem}.*.tmp{self.current_path.suffix}"):
            log.warning("tile %s: removing %s, left by an interrupted state write",
                        self.tile_id, tmp.name)
            tmp.unlink(missing_ok=True)

    # -- the unreadable-asset register ---------------------------------------------------
    def read_register(self) -> dict[str, dict]:
        """``"<item>|<asset>" -> {"item", "asset", "first_failed", "runs", "reason"}``."""
        if not self.register_path.exists():
            return {}
        return json.loads(self.register_path.read_text())

    def write_register(self, register: dict[str, dict]) -> None:
        if register:
            write_json(self.register_path, register)
        else:
            self.register_path.unlink(missing_ok=True)


__all__ = ["TileStateStore"]
