"""Alert polygons: per-tile pieces, merged across tile edges, with ids that stay stable
across daily runs.

Two steps, so that a daily run re-reads only the rasters of the tiles it changed:

1. :func:`tile_pieces` (rule ``tile_report``, which has the tile's alert layers in memory)
   turns a tile's open alerts (statuses 1-3) into *pieces*: polygons of 4-connected pixels
   of one status and one month of first detection, with their pixel count and sums
   (``alerts/tiles/<tile>.gpkg``, written only by that rule). A piece is exact: its area
   is its pixel count times the pixel area.
2. :func:`merge_alerts` (rule ``alert_polygons``) joins the pieces of all tiles that share
   an edge (of positive length: 4-connectivity, as in step 1; on the common grid the
   shared edges of neighbouring tiles coincide exactly, so the join is exact) into
   alerts, drops alerts smaller than ``alerts.min_mapping_unit_ha`` (after the join, so
   that an alert cut by a tile edge is judged whole), and gives each an id.

**Stable ids.** The previous polygons file is read before it is replaced. An alert
inherits the id of the previous alert it overlaps most (each previous alert passes its id
to the new alert that covers most of it); when it inherits several, it keeps the oldest
(earliest first detection, then smallest id) and the others are recorded as *merged*
into it; previous alerts that no longer overlap any alert (returned to normal) are
recorded as *cleared*. New alerts get ids above every id used so far. The record is the
``history`` layer of the same GeoPackage (``alert_id``, ``event``, ``into``,
``recorded``).

Fields of layer ``alerts``: ``alert_id`` (int64), ``status`` (int, the most advanced of its
pixels: 1 first detection, 2 provisional, 3 confirmed), ``status_name``, ``first_date``
(DateTime, earliest first detection), ``confirmed_date`` (DateTime, earliest
confirmation; null when none), ``area_ha``, ``n_pixels``, ``confirmed_share`` (of its
pixels), ``mean_loss`` (index units), ``mean_confidence`` (0-100), ``tiles``
(comma-separated tile ids), ``updated`` (DateTime of the run that wrote it).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from affine import Affine
from scipy import ndimage

from ..io import atomic_path
from .ladder import ALERT_STATUSES, CONFIRMED, STATUS_CLASSES

log = logging.getLogger(__name__)

EPOCH = np.datetime64("1970-01-01", "D")
_FOUR = ndimage.generate_binary_structure(2, 1)
PIECE_COLUMNS = ["tile", "status", "month", "first_day", "confirmed_day", "n_pixels",
                 "sum_loss", "sum_confidence"]
ALERT_LAYER, HISTORY_LAYER = "alerts", "history"


def _month_index(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of int days since 1970-01-01."""
    d = EPOCH + days.astype("timedelta64[D]")
    return d.astype("datetime64[M]").astype(np.int64)


def tile_pieces(arrays: dict[str, np.ndarray], *, transform: Affine, crs: str,
                tile_id: str) -> gpd.GeoDataFrame:
    """The pieces of one tile's open alerts (module docstring, step 1).

    ``arrays`` are the tile's alert report layers
    (:func:`forestwatch.reports.alert_report_arrays`). Columns: :data:`PIECE_COLUMNS`
    (``first_day``/``confirmed_day`` int days since 1970, 0 = none; ``month`` months since
    1970-01 of the first detection) and the geometry, in ``crs``.
    """
    from rasterio.features import shapes
    from shapely.geometry import shape

    status = arrays["alert_status"]
    first = arrays["first_detection_date"].astype(np.int64)
    is_alert = np.isin(status, ALERT_STATUSES)
    klass = np.zeros(status.shape, dtype=np.int64)
    klass[is_alert] = _month_index(first[is_alert]) * 8 + status[is_alert]
    labels = np.zeros(status.shape, dtype=np.int32)
    n = 0
    for value in np.unique(klass[is_alert]):
        lab, count = ndimage.label(klass == value, structure=_FOUR)
        labels[lab > 0] = lab[lab > 0] + n
        n += count
    if n == 0:
        return gpd.GeoDataFrame({c: pd.Series(dtype="int64") for c in PIECE_COLUMNS}
                                | {"tile": pd.Series(dtype="str")},
                                geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    idx = np.arange(1, n + 1)
    conf_days = np.where(status == CONFIRMED, arrays["confirmation_date"], np.iinfo(np.int32).max)
    loss = np.where(is_alert, arrays["max_loss"], 0).astype(np.float64)
    confidence = np.where(is_alert, arrays["confidence"], 0).astype(np.float64)
    per_piece = _PerLabel(labels, n)
    stats = {
        "status": per_piece.maximum(status),
        "month": per_piece.minimum(klass // 8),
        "first_day": per_piece.minimum(first),
        "confirmed_day": per_piece.minimum(conf_days),
        "n_pixels": per_piece.counts,
        "sum_loss": ndimage.sum(loss, labels, idx),
        "sum_confidence": ndimage.sum(confidence, labels, idx),
    }
    geoms: dict[int, object] = {}
    for geom, value in shapes(labels, mask=labels > 0, connectivity=4, transform=transform):
        geoms[int(value)] = shape(geom)  # one polygon per 4-connected label
    frame = pd.DataFrame({k: np.asarray(v) for k, v in stats.items()})
    frame["confirmed_day"] = np.where(frame["confirmed_day"] >= np.iinfo(np.int32).max, 0,
                                      frame["confirmed_day"])
    for col in ("status", "month", "first_day", "confirmed_day", "n_pixels"):
        frame[col] = frame[col].astype(np.int64)
    frame.insert(0, "tile", tile_id)
    return gpd.GeoDataFrame(frame, geometry=[geoms[i] for i in idx], crs=crs)


class _PerLabel:
    """Minima and maxima of a raster per label ``1..n`` of ``labels`` (int, 0 = none,
    every label present), from one stable sort of the labelled pixels by label.
    ``scipy.ndimage.minimum``/``maximum`` sort the whole raster by value once per call:
    four calls were most of a tile's pieces (BENCHMARKS.md, "the run's tail"). Minima and
    maxima do not depend on the order, so the values are ndimage's."""

    def __init__(self, labels: np.ndarray, n: int) -> None:
        flat = labels.ravel()
        labelled = np.flatnonzero(flat)
        self._order = labelled[np.argsort(flat[labelled], kind="stable")]
        ordered = flat[self._order]
        self._starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        if len(self._starts) != n or ordered[-1] != n:
            raise ValueError(f"labels are not 1..{n}, each present")
        #: pixels per label (int64)
        self.counts = np.diff(np.r_[self._starts, len(self._order)])

    def minimum(self, values: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(values.ravel()[self._order], self._starts)

    def maximum(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values.ravel()[self._order], self._starts)


def write_pieces(pieces: gpd.GeoDataFrame, path: str | Path) -> None:
    """Write a tile's pieces (rule ``tile_report`` is the only writer), atomically."""
    with atomic_path(path) as tmp:
        pieces.to_file(tmp, layer="pieces", driver="GPKG")


def read_pieces(paths: Sequence[str | Path]) -> gpd.GeoDataFrame:
    frames = [gpd.read_file(p, layer="pieces") for p in paths]
    frames = [f for f in frames if len(f)]
    if not frames:
        return gpd.GeoDataFrame(columns=PIECE_COLUMNS + ["geometry"], geometry="geometry")
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)


def _components(pieces: gpd.GeoDataFrame) -> np.ndarray:
    """Component number of each piece: pieces sharing an edge of positive length."""
    n = len(pieces)
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    geoms = pieces.geometry.values
    left, right = pieces.sindex.query(geoms, predicate="intersects")
    for i, j in zip(left, right, strict=True):
        if i < j and geoms[i].intersection(geoms[j]).length > 0:
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)])


def _dissolve(pieces: gpd.GeoDataFrame, pixel_area_m2: float) -> gpd.GeoDataFrame:
    """One alert per connected component of ``pieces``, in component order, its pieces
    in their order. The columns are taken once as numpy arrays and each component as a
    slice of them: selecting each component from the frame was quadratic (17 s for the
    3,351 pieces of a 1000 x 1000 px area, BENCHMARKS.md)."""
    from shapely import union_all

    comp = _components(pieces)
    order = np.argsort(comp, kind="stable")  # each component's pieces in their order
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    status = pieces["status"].to_numpy()
    first_day = pieces["first_day"].to_numpy()
    confirmed_day = pieces["confirmed_day"].to_numpy()
    n_pixels = pieces["n_pixels"].to_numpy()
    sum_loss = pieces["sum_loss"].to_numpy()
    sum_confidence = pieces["sum_confidence"].to_numpy()
    tile = pieces["tile"].to_numpy()
    geometry = pieces.geometry.values
    rows, geoms = [], []
    for part in np.split(order, bounds):
        n = int(n_pixels[part].sum())
        confirmed = part[status[part] == CONFIRMED]
        cdays = confirmed_day[confirmed]
        cdays = cdays[cdays > 0]
        rows.append({
            "status": int(status[part].max()),
            "first_day": int(first_day[part].min()),
            "confirmed_day": int(cdays.min()) if len(cdays) else 0,
            "n_pixels": n,
            "area_ha": n * pixel_area_m2 / 1e4,
            "confirmed_share": float(n_pixels[confirmed].sum()) / n,
            "mean_loss": float(sum_loss[part].sum()) / n,
            "mean_confidence": float(sum_confidence[part].sum()) / n,
            "tiles": ",".join(sorted(set(tile[part]))),
        })
        geoms.append(union_all(list(geometry[part])).simplify(0))  # drop collinear vertices
    return gpd.GeoDataFrame(pd.DataFrame(rows), geometry=geoms, crs=pieces.crs)


def _read_previous(path: Path) -> tuple[gpd.GeoDataFrame | None, pd.DataFrame | None]:
    if not path.exists():
        return None, None
    import pyogrio

    layers = {name for name, _ in pyogrio.list_layers(path)}
    prev = gpd.read_file(path, layer=ALERT_LAYER) if ALERT_LAYER in layers else None
    hist = (pyogrio.read_dataframe(path, layer=HISTORY_LAYER, read_geometry=False)
            if HISTORY_LAYER in layers else None)
    return prev, hist


def _assign_ids(alerts: gpd.GeoDataFrame, prev: gpd.GeoDataFrame | None,
                history: pd.DataFrame, now: pd.Timestamp) -> tuple[np.ndarray, list[dict]]:
    used = [0]
    if prev is not None and len(prev):
        used.append(int(prev["alert_id"].max()))
    if len(history):
        used += [int(history["alert_id"].max()), int(history["into"].fillna(0).max())]
    next_id = max(used) + 1
    ids = np.zeros(len(alerts), dtype=np.int64)
    events: list[dict] = []
    heirs: dict[int, list[int]] = {}  # new alert -> previous alerts passing it their id
    cleared = []
    if prev is not None and len(prev):
        # (previous alert j, new alert i) pairs whose boxes meet
        prev_idx, new_idx = alerts.sindex.query(prev.geometry.values, predicate="intersects")
        overlap: dict[int, tuple[float, int]] = {}
        for j, i in zip(prev_idx, new_idx, strict=True):
            area = prev.geometry.values[j].intersection(alerts.geometry.values[i]).area
            if area > 0 and area > overlap.get(j, (0.0, -1))[0]:
                overlap[j] = (area, i)
        for j in range(len(prev)):
            if j in overlap:
                heirs.setdefault(overlap[j][1], []).append(j)
            else:
                cleared.append(int(prev["alert_id"].iloc[j]))
    # new ids in the order alerts began (then north to south, west to east)
    centroids = alerts.geometry.centroid
    order_new = sorted(range(len(alerts)), key=lambda i: (
        int(alerts["first_day"].iloc[i]), -centroids.iloc[i].y, centroids.iloc[i].x))
    for i in order_new:
        inherited = heirs.get(i, [])
        if not inherited:
            ids[i] = next_id
            next_id += 1
            continue
        order = sorted(inherited, key=lambda j: (prev["first_date"].iloc[j],
                                                 int(prev["alert_id"].iloc[j])))
        ids[i] = int(prev["alert_id"].iloc[order[0]])
        for j in order[1:]:
            events.append({"alert_id": int(prev["alert_id"].iloc[j]), "event": "merged",
                           "into": int(ids[i]), "recorded": now})
    events += [{"alert_id": a, "event": "cleared", "into": None, "recorded": now}
               for a in cleared]
    return ids, events


def merge_alerts(piece_files: Sequence[str | Path], out: str | Path, *,
                 min_mapping_unit_ha: float, pixel_size_m: float,
                 now: dt.datetime | None = None) -> gpd.GeoDataFrame:
    """Join the tiles' pieces into alerts with stable ids and write ``out`` (layers
    ``alerts`` and ``history``; module docstring), replacing the previous file atomically.
    Returns the alerts."""
    out = Path(out)
    stamp = pd.Timestamp(now or dt.datetime.now(dt.UTC)).tz_localize(None).floor("s")
    pieces = read_pieces(piece_files)
    prev, history = _read_previous(out)
    history = history if history is not None else pd.DataFrame(
        columns=["alert_id", "event", "into", "recorded"])
    if len(pieces):
        alerts = _dissolve(pieces, pixel_size_m ** 2)
        alerts = alerts[alerts["area_ha"] >= min_mapping_unit_ha].reset_index(drop=True)
    else:
        alerts = gpd.GeoDataFrame(columns=["status", "first_day", "confirmed_day", "n_pixels",
                                           "area_ha", "confirmed_share", "mean_loss",
                                           "mean_confidence", "tiles", "geometry"],
                                  geometry="geometry", crs=prev.crs if prev is not None else None)
    ids, events = _assign_ids(alerts, prev, history, stamp)
    alerts.insert(0, "alert_id", ids)
    alerts.insert(2, "status_name", [STATUS_CLASSES[int(s)][0] for s in alerts["status"]])
    alerts["first_date"] = _to_datetime(alerts.pop("first_day"))
    alerts["confirmed_date"] = _to_datetime(alerts.pop("confirmed_day"))
    alerts["updated"] = stamp
    alerts = alerts.sort_values("alert_id").reset_index(drop=True)
    cols = ["alert_id", "status", "status_name", "first_date", "confirmed_date", "area_ha",
            "n_pixels", "confirmed_share", "mean_loss", "mean_confidence", "tiles", "updated",
            "geometry"]
    alerts = gpd.GeoDataFrame(alerts[cols], geometry="geometry", crs=alerts.crs)
    if events:
        history = pd.concat([history, pd.DataFrame(events)], ignore_index=True)
    history["alert_id"] = history["alert_id"].astype(np.int64)
    history["into"] = history["into"].astype("Int64")
    history["recorded"] = pd.to_datetime(history["recorded"])
    import pyogrio

    with atomic_path(out) as tmp:
        alerts.to_file(tmp, layer=ALERT_LAYER, driver="GPKG")
        pyogrio.write_dataframe(history, tmp, layer=HISTORY_LAYER, driver="GPKG")
    log.info("%d alert(s) of at least %s ha from %d piece(s); %d merged, %d cleared",
             len(alerts), min_mapping_unit_ha, len(pieces),
             sum(e["event"] == "merged" for e in events),
             sum(e["event"] == "cleared" for e in events))
    return alerts


def _to_datetime(days: pd.Series) -> pd.Series:
    values = pd.to_datetime(np.asarray(days, dtype=np.int64), unit="D", origin="unix")
    return pd.Series(values, index=days.index).where(np.asarray(days) > 0)


__all__ = ["tile_pieces", "write_pieces", "read_pieces", "merge_alerts", "PIECE_COLUMNS"]
