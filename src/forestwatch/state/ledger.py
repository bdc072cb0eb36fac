"""The ledger of a tile's state: what the monitor has seen, so that nothing is applied twice.

A state is only as good as its record of which acquisitions made it. The ledger holds:

* ``fit``: the history period, its solar days and item ids (the fit saw these);
* ``applied``: the solar days monitored since, in order, each with its items, their
  acquisition keys (:func:`forestwatch.acquisitions.acquisition_key`), the number of
  forest pixels observed, the assets read as not observed, and the run that applied it;
* ``skipped``: items that were found and deliberately not applied, and why;
* ``fitted_from``: the content digest of the fitted state the monitor was brought forward
  from, so that a refit is told apart from the state it would replace.

Every module asks the ledger (:meth:`Ledger.is_known`, :attr:`Ledger.last_day`, ...); none
reads the serialised form, which only :mod:`forestwatch.state._netcdf` touches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import pystac

from ..acquisitions import acquisition_key


@dataclass
class FitRecord:
    """The history the monitor was fitted on."""

    start: str
    end: str
    days: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    #: ``{"item", "asset", "reason"}`` read as not observed during the fit
    unreadable: list[dict] = field(default_factory=list)
    #: SHA-256 (hex) of what the fit was made from (:func:`forestwatch.monitor.fit_key`:
    #: the fit's config, the forest mask, the history items and their versions); a rerun
    #: of rule ``tile_state`` keeps a fitted state whose key matches. ``""`` in a state
    #: written before it was recorded (never kept: refitted once)
    made_from: str = ""


@dataclass
class AppliedDay:
    """One solar day fed to the monitor."""

    day: str
    items: list[str]
    acquisitions: list[str]
    #: forest pixels with a valid (clear) observation; 0 = nothing observed, monitor not called
    valid_pixels: int
    #: ``{"item", "asset", "reason"}`` applied as not observed (unreadable)
    unreadable: list[dict] = field(default_factory=list)
    #: who applied it: ``fast_forward`` or the id of a daily run
    run: str | None = None
    #: per item, its version (:func:`forestwatch.acquisitions.version_label`)
    versions: list[str] = field(default_factory=list)


@dataclass
class Skip:
    """An item found and deliberately not applied."""

    item: str
    reason: str
    day: str | None = None
    run: str | None = None


@dataclass
class Ledger:
    """What a tile's monitor has seen; see the module docstring."""

    fit: FitRecord
    applied: list[AppliedDay] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    fitted_from: str | None = None

    @property
    def last_day(self) -> dt.date:
        """The last solar day monitored, or the end of the history period."""
        return dt.date.fromisoformat(self.applied[-1].day if self.applied else self.fit.end)

    @property
    def applied_item_ids(self) -> set[str]:
        return {i for entry in self.applied for i in entry.items}

    @property
    def applied_acquisitions(self) -> dict[str, tuple[str, str]]:
        """Acquisition key -> (id, version label) of the item version that was applied."""
        out = {}
        for e in self.applied:
            versions = e.versions or [""] * len(e.items)
            for key, item, version in zip(e.acquisitions, e.items, versions, strict=True):
                out[key] = (item, version)
        return out

    @property
    def skipped_item_ids(self) -> set[str]:
        return {s.item for s in self.skipped}

    def is_known(self, item: pystac.Item | str) -> bool:
        """True when this item (by id) was fitted on, applied, or recorded as skipped."""
        item_id = item if isinstance(item, str) else item.id
        return (item_id in self.applied_item_ids or item_id in self.skipped_item_ids
                or item_id in set(self.fit.items))

    def applied_version(self, item: pystac.Item) -> tuple[str, str] | None:
        """(id, version label) of the applied version of ``item``'s acquisition, if any."""
        return self.applied_acquisitions.get(acquisition_key(item))

    def descends_from(self, fitted_digest: str) -> bool:
        """True when this state was brought forward from the fitted state with that
        digest (or is that fit; states from before the digest was kept say nothing and
        are trusted)."""
        return self.fitted_from is None or self.fitted_from == fitted_digest

    def record_day(self, entry: AppliedDay) -> None:
        if entry.day <= (self.applied[-1].day if self.applied else self.fit.end):
            raise ValueError(f"day {entry.day} is not after the last monitored day "
                             f"{self.last_day}: nrt would count it out of order")
        self.applied.append(entry)

    def record_skip(self, skip: Skip) -> bool:
        """Record ``skip`` unless the item is already recorded; True if it was new."""
        if skip.item in self.skipped_item_ids:
            return False
        self.skipped.append(skip)
        return True

    def applied_by(self, run: str) -> list[AppliedDay]:
        """The days that run ``run`` applied (also those of an earlier, killed attempt)."""
        return [e for e in self.applied if e.run == run]

    def starts_with(self, other: Ledger) -> bool:
        """True when ``other``'s monitored days, with the same items, are this ledger's
        first days (``other`` is an earlier state of this one)."""
        n = len(other.applied)
        return [(e.day, e.items) for e in self.applied[:n]] == \
            [(e.day, e.items) for e in other.applied]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Ledger:
        return cls(
            fit=FitRecord(**data["fit"]),
            applied=[AppliedDay(**e) for e in data.get("applied", [])],
            skipped=[Skip(**s) for s in data.get("skipped", [])],
            fitted_from=data.get("fitted_from"),
        )

    @classmethod
    def from_v1_metadata(cls, meta: dict) -> Ledger:
        """The ledger of a format-1 state, whose metadata dict held it loose."""
        hist = meta["history"]
        return cls(
            fit=FitRecord(start=str(hist["start"]), end=str(hist["end"]),
                          days=list(hist.get("days", [])), items=list(hist.get("items", [])),
                          unreadable=list(hist.get("unreadable", []))),
            applied=[AppliedDay(day=e["day"], items=list(e["items"]),
                                acquisitions=list(e.get("datatakes", [])),
                                valid_pixels=int(e.get("valid_pixels", 0)),
                                unreadable=list(e.get("unreadable", [])))
                     for e in meta.get("applied", [])],
            skipped=[Skip(item=s["item"], reason=s["reason"], day=s.get("day"))
                     for s in meta.get("skipped", [])],
        )


__all__ = ["Ledger", "FitRecord", "AppliedDay", "Skip"]
