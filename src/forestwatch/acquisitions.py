"""What one Sentinel-2 acquisition is, in one place: the fit, the fast-forward and the daily
run all see the same acquisitions in the same catalog.

An **acquisition** is one granule (MGRS tile) sensed at one time. A provider may publish
it more than once: ESA reprocesses products with newer processing baselines, and a
catalog can hold both versions. :func:`acquisition_key` names the acquisition whatever
its version; :func:`resolve_reprocessed` keeps the newest version of each one, **per
granule**: re-publishing granule A of a datatake never hides granule B of the same day.
Only after that are acquisitions grouped by **solar day** (:func:`by_solar_day`), the
time step a monitor sees: on one day the granules of a tile's neighbouring MGRS tiles
are fused into one image.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pystac

log = logging.getLogger(__name__)


def granule_id(item: pystac.Item) -> str:
    """The MGRS tile of an item, from the first property present: ``s2:mgrs_tile``, the
    MGRS extension's zone + latitude band + grid square, ``grid:code``; else the item id
    (an item whose granule cannot be told is its own acquisition)."""
    props = item.properties
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    if "mgrs:utm_zone" in props:
        return (f"{props['mgrs:utm_zone']}{props.get('mgrs:latitude_band', '')}"
                f"{props.get('mgrs:grid_square', '')}")
    if props.get("grid:code"):
        return str(props["grid:code"])
    return item.id


def acquisition_key(item: pystac.Item) -> str:
    """``<granule>@<sensing time to the second>``: the same for every processing version
    of one acquisition, different for every other granule or pass."""
    return f"{granule_id(item)}@{item.datetime:%Y-%m-%dT%H:%M:%S}"


def version_of(item: pystac.Item) -> tuple[str, str, str]:
    """Sort key of an item among the versions of its acquisition, oldest first: processing
    baseline, then publication time (``published``, ``updated`` or ``created``), then id."""
    props = item.properties
    published = props.get("published") or props.get("updated") or props.get("created") or ""
    return str(props.get("s2:processing_baseline", "")), str(published), item.id


def version_label(item: pystac.Item) -> str:
    """:func:`version_of` without the id, as one string that sorts the same way
    (``<baseline>|<published>``): what a ledger keeps to compare versions later."""
    baseline, published, _ = version_of(item)
    return f"{baseline}|{published}"


@dataclass(frozen=True)
class Resolution:
    """The outcome of :func:`resolve_reprocessed`."""

    #: one item per acquisition (its newest version), sorted by datetime then id
    kept: list[pystac.Item]
    #: ``{"item", "superseded_by", "reason"}`` for every older version left out
    superseded: list[dict]


def resolve_reprocessed(items: Iterable[pystac.Item]) -> Resolution:
    """Keep the newest version (:func:`version_of`) of each acquisition
    (:func:`acquisition_key`); an item listed twice (same id) counts once."""
    best: dict[str, pystac.Item] = {}
    seen: dict[str, pystac.Item] = {}
    for it in items:
        seen.setdefault(it.id, it)
    for it in seen.values():
        key = acquisition_key(it)
        if key not in best or version_of(it) > version_of(best[key]):
            best[key] = it
    kept = sorted(best.values(), key=lambda i: (i.datetime, i.id))
    superseded = []
    for it in seen.values():
        winner = best[acquisition_key(it)]
        if winner is not it:
            superseded.append({
                "item": it.id, "superseded_by": winner.id,
                "reason": f"reprocessed: superseded by {winner.id} (baseline "
                          f"{version_of(winner)[0] or '?'})",
            })
    if superseded:
        log.info("reprocessed duplicates: keeping the newest version of %d acquisition(s): %s",
                 len(superseded), ", ".join(s["item"] for s in superseded))
    return Resolution(kept=kept, superseded=superseded)


def solar_day(item: pystac.Item) -> dt.date:
    """Local solar date of an acquisition: UTC shifted by the item's mean longitude
    (4 minutes per degree), the date Sentinel-2 users call the acquisition's."""
    lon = (item.bbox[0] + item.bbox[2]) / 2
    return (item.datetime + dt.timedelta(seconds=lon * 240)).date()


def by_solar_day(items: Sequence[pystac.Item]) -> dict[dt.date, list[pystac.Item]]:
    """The newest version of each acquisition, grouped by solar day, days in order and
    items within a day by datetime then id."""
    days: dict[dt.date, list[pystac.Item]] = defaultdict(list)
    for it in resolve_reprocessed(items).kept:
        days[solar_day(it)].append(it)
    return {d: days[d] for d in sorted(days)}


__all__ = ["acquisition_key", "granule_id", "version_of", "version_label", "resolve_reprocessed",
           "Resolution",
           "solar_day", "by_solar_day"]
