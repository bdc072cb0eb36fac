"""Alerts people can act on, from a tile's monitoring state.

* :mod:`forestwatch.alerts.anomaly` - what "anomalous" means per nrt monitor class;
* :mod:`forestwatch.alerts.ladder` - :class:`AlertLayers`, the per-pixel status ladder
  (first detection, provisional, confirmed, returned to normal) with dates, count, loss
  and confidence, kept in the tile state and updated by
  :mod:`forestwatch.monitor.forward` with every monitored acquisition;
* :mod:`forestwatch.alerts.polygons` - the alert polygons of a run, merged across tile
  edges, with ids that stay stable across daily runs (rule ``alert_polygons``);
* :mod:`forestwatch.alerts.statistics` - mapped alert area per tile, month, status and
  region (rule ``alert_statistics``).

Public names are imported from their module on first use, so that importing the ladder
(which the state format needs) does not import geopandas.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_PUBLIC = {
    "AlertLayers": "ladder", "AlertParams": "ladder", "observe": "ladder",
    "STATUS_CLASSES": "ladder", "STATUS_NODATA": "ladder", "ALERT_STATUSES": "ladder",
    "anomaly_strength": "anomaly",
}


__getattr__ = lazy_attributes(__name__, _PUBLIC)

__all__ = list(_PUBLIC)
