"""Reference samples for scoring the strategy candidates, and their pixels on the grid.

A reference file (``strategy.reference.path``) holds one sample per feature or row:
points or polygons, each with an id, a label (one of ``disturbed_labels`` or
``stable_labels``), for disturbed samples a date inside the monitoring period, and
optionally a disturbance type and a stratum. Formats:

* any vector file geopandas reads (GeoPackage, GeoJSON, shapefile, ...; ``layer``
  optional), in its own CRS;
* CSV with ``x_field``/``y_field`` columns in ``crs`` (points);
* with ``nrt_validate_db``: the SQLite database nrt-validate's labelling interface writes,
  table ``segments(id, begin, end, label, feature_id)``, ``begin``/``end`` in days since
  1970-01-01. The geometries come from ``path``, joined on ``id_field`` = ``feature_id``.
  A feature is disturbed when one of its segments has a label in ``disturbed_labels``:
  its date is the ``begin`` of the first such segment inside the period and its type is
  that segment's label, lower-cased with spaces as underscores ("Clear cut" ->
  ``clear_cut``). A feature whose segments are all in ``stable_labels`` is stable.
  Features with no segment are not labelled yet and are left out (logged); the label,
  date and type fields of the vector file are not used.

Types are free text; :data:`forestwatch.accuracy.TYPES` names those of the synthetic
truth (clear_cut, partial, thinning, storm). With ``stratum_field``, every stratum in the
file needs its area in ``strata`` (hectares) for the area-adjusted estimates of
:mod:`forestwatch.strategy.estimate`.

Every problem with the file raises :class:`ReferenceDataError`, naming the file, the samples
and what to do.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..grid import Tile

log = logging.getLogger(__name__)

EPOCH = dt.date(1970, 1, 1)
#: at most this many ids are listed in an error message
SHOW = 5
SEGMENT_COLUMNS = ("id", "begin", "end", "label", "feature_id")


class ReferenceDataError(ValueError):
    """The reference samples cannot be used; the message says what to fix.
    """


@dataclass(frozen=True, eq=False)
class ReferenceSamples:
    """Reference samples, one row per sample.

    * ``ids``: object array of str, unique;
    * ``geometry``: GeoSeries of Points or (Multi)Polygons in the samples' CRS;
    * ``disturbed``: bool array;
    * ``kind``: object array of str, the disturbance type ("" when none or unknown);
    * ``date``: int64 array, disturbance date in days since 1970-01-01, -1 for stable
      samples;
    * ``stratum``: object array of str, or None when the file has no strata;
    * ``strata_area_ha``: stratum -> area in hectares, or None.
    """

    ids: np.ndarray
    geometry: gpd.GeoSeries
    disturbed: np.ndarray
    kind: np.ndarray
    date: np.ndarray
    stratum: np.ndarray | None = None
    strata_area_ha: dict[str, float] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def crs(self):
        return self.geometry.crs

    def to_crs(self, crs) -> ReferenceSamples:
        """The same samples with their geometries in ``crs``."""
        return replace(self, geometry=self.geometry.to_crs(crs))

    def subset(self, keep: np.ndarray) -> ReferenceSamples:
        """The samples where the bool array ``keep`` is true, in order."""
        keep = np.asarray(keep, dtype=bool)
        return replace(
            self, ids=self.ids[keep], geometry=self.geometry[keep].reset_index(drop=True),
            disturbed=self.disturbed[keep], kind=self.kind[keep], date=self.date[keep],
            stratum=None if self.stratum is None else self.stratum[keep])


def _few(ids, *, quote: bool = True) -> str:
    """The first few of ``ids`` for a message (quoted), and how many more there are."""
    ids = [str(i) for i in ids]
    more = f" and {len(ids) - SHOW} more" if len(ids) > SHOW else ""
    return ", ".join(repr(i) if quote else i for i in ids[:SHOW]) + more


def _days(value: str) -> int:
    return (dt.date.fromisoformat(str(value)) - EPOCH).days


def _iso(days: int) -> str:
    return (EPOCH + dt.timedelta(days=int(days))).isoformat()


def type_of_label(label: str) -> str:
    """Disturbance type of an nrt-validate segment label: lower case, spaces to ``_``."""
    return "_".join(str(label).strip().lower().split())


def _is_blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return value is pd.NaT or (isinstance(value, str) and not value.strip())


def _text(value) -> str:
    """A field value as text: integral floats (CSV ids with gaps) without ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _need_field(frame: pd.DataFrame, field: str, key: str, where: str) -> None:
    if field not in frame.columns:
        have = [c for c in frame.columns if c != "geometry"]
        raise ReferenceDataError(
            f"{where}: no field {field!r} (named by strategy.reference.{key}); the file has "
            f"the fields {have}. Set strategy.reference.{key} to the right one, or add the "
            "field to the file.")


def _read_table(path: Path, ref_cfg: dict) -> gpd.GeoDataFrame:
    """The file's features as a GeoDataFrame with a CRS."""
    if not path.exists():
        raise ReferenceDataError(
            f"Reference file {str(path)!r} does not exist; check strategy.reference.path "
            "(relative paths are from the working directory of the run).")
    if path.suffix.lower() == ".csv":
        try:
            table = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise ReferenceDataError(
                f"Reference file {str(path)!r} cannot be read as CSV ({err}); it must be a "
                "comma-separated table with a header row.") from err
        for key in ("x_field", "y_field"):
            _need_field(table, ref_cfg[key], key, f"Reference CSV {str(path)!r}")
        xy = {}
        for key in ("x_field", "y_field"):
            field = ref_cfg[key]
            xy[key] = pd.to_numeric(table[field], errors="coerce")
            bad = xy[key].isna() | ~np.isfinite(xy[key].astype(float))
            if bad.any():
                ids = table[ref_cfg["id_field"]][bad] if ref_cfg["id_field"] in table else (
                    [f"row {i + 2}" for i in np.flatnonzero(bad)])
                raise ReferenceDataError(
                    f"Reference CSV {str(path)!r}: {int(bad.sum())} rows have no number in "
                    f"{field!r} (strategy.reference.{key}): {_few(ids)}. Give every row "
                    "its coordinates, or remove it.")
        points = gpd.points_from_xy(xy["x_field"].astype(float), xy["y_field"].astype(float))
        return gpd.GeoDataFrame(table, geometry=points, crs=ref_cfg["crs"])
    try:
        frame = gpd.read_file(path, layer=ref_cfg.get("layer") or None)
    except Exception as err:  # pyogrio raises its own types for every reading problem
        layer = f" (layer {ref_cfg['layer']!r})" if ref_cfg.get("layer") else ""
        raise ReferenceDataError(
            f"Reference file {str(path)!r}{layer} cannot be read as a vector file "
            f"({str(err).rstrip('. ')}). "
            "Use a GeoPackage, GeoJSON or CSV (with x/y columns); for a GeoPackage with "
            "several layers set strategy.reference.layer.") from err
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame.columns:
        raise ReferenceDataError(
            f"Reference file {str(path)!r} has no geometry column. Samples need points or "
            "polygons; for a table of coordinates use a .csv with x_field/y_field.")
    if frame.crs is None:
        raise ReferenceDataError(
            f"Reference file {str(path)!r} has no CRS; set one (e.g. ogr2ogr -a_srs EPSG:...).")
    return frame


def _check_geometries(frame: gpd.GeoDataFrame, ids: np.ndarray, where: str) -> None:
    geom = frame.geometry
    empty = geom.isna().to_numpy() | geom.is_empty.to_numpy()
    if empty.any():
        raise ReferenceDataError(
            f"{where}: {int(empty.sum())} samples have an empty geometry: "
            f"{_few(ids[empty])}. Give them a point or polygon, or remove them.")
    kinds = geom.geom_type.to_numpy()
    wrong = ~np.isin(kinds, ("Point", "Polygon", "MultiPolygon"))
    if wrong.any():
        raise ReferenceDataError(
            f"{where}: samples must be points or polygons; {int(wrong.sum())} are not "
            f"({sorted(set(kinds[wrong]))}): {_few(ids[wrong])}.")
    invalid = ~geom.is_valid.to_numpy()
    if invalid.any():
        reasons = [shapely.is_valid_reason(g) for g in geom[invalid][:SHOW]]
        raise ReferenceDataError(
            f"{where}: {int(invalid.sum())} samples have invalid geometries: "
            f"{_few(ids[invalid])} ({'; '.join(reasons)}). Repair them (e.g. QGIS 'Fix "
            "geometries' or shapely.make_valid) and read again.")


def _ids(frame: pd.DataFrame, ref_cfg: dict, where: str) -> np.ndarray:
    field = ref_cfg["id_field"]
    _need_field(frame, field, "id_field", where)
    raw = frame[field].to_numpy(dtype=object)
    blank = np.array([_is_blank(v) for v in raw], dtype=bool)
    if blank.any():
        rows = [f"row {i + 1}" for i in np.flatnonzero(blank)]
        raise ReferenceDataError(
            f"{where}: {int(blank.sum())} samples have no id in {field!r}: {_few(rows)}. "
            "Give every sample a unique id.")
    ids = np.array([_text(v) for v in raw], dtype=object)
    counts = pd.Series(ids).value_counts()
    dup = counts[counts > 1]
    if len(dup):
        raise ReferenceDataError(
            f"{where}: duplicate ids in {field!r}: {_few(dup.index)}. Ids must be unique; "
            "renumber the samples or remove the copies.")
    return ids


def _check_labels(labels: np.ndarray, ids: np.ndarray, ref_cfg: dict, where: str,
                  field: str) -> None:
    known = set(ref_cfg["disturbed_labels"]) | set(ref_cfg["stable_labels"])
    unknown = np.array([lab not in known for lab in labels], dtype=bool)
    if unknown.any():
        names = sorted({str(v) for v in labels[unknown]})
        raise ReferenceDataError(
            f"{where}: labels {names} in {field} are neither in "
            f"strategy.reference.disturbed_labels {list(ref_cfg['disturbed_labels'])} nor "
            f"in stable_labels {list(ref_cfg['stable_labels'])} (samples {_few(ids[unknown])}). "
            "Add them to one of the two lists, or relabel the samples.")


def _parse_dates(values: np.ndarray, ids: np.ndarray, field: str, where: str) -> np.ndarray:
    """Days since 1970 of ISO dates (strings, dates or timestamps); errors list the ids."""
    out = np.full(len(values), -1, dtype=np.int64)
    missing, bad = [], []
    for i, v in enumerate(values):
        if _is_blank(v):
            missing.append(ids[i])
            continue
        try:
            if isinstance(v, dt.datetime | pd.Timestamp):
                v = v.date()
            if not isinstance(v, dt.date):
                text = str(v).strip()
                v = (dt.date.fromisoformat(text) if len(text) <= 10
                     else dt.datetime.fromisoformat(text).date())
            day = v
            out[i] = (day - EPOCH).days
        except ValueError:
            bad.append(f"{ids[i]} {v!r}")
    if missing:
        raise ReferenceDataError(
            f"{where}: {len(missing)} disturbed samples have no date in {field!r} "
            f"(strategy.reference.date_field): {_few(missing)}. Give each its disturbance "
            "date (YYYY-MM-DD), or label it stable if it is not disturbed.")
    if bad:
        raise ReferenceDataError(
            f"{where}: {len(bad)} disturbed samples have a date in {field!r} that is not an "
            f"ISO date (YYYY-MM-DD): {_few(bad, quote=False)}.")
    return out


def _check_period(date: np.ndarray, disturbed: np.ndarray, ids: np.ndarray,
                  period: tuple[str, str], where: str) -> None:
    start, end = _days(period[0]), _days(period[1])
    outside = disturbed & ((date < start) | (date > end))
    if outside.any():
        shown = [f"{i} ({_iso(d)})" for i, d in zip(ids[outside], date[outside], strict=True)]
        raise ReferenceDataError(
            f"{where}: {int(outside.sum())} disturbed samples are dated outside the monitoring "
            f"period {period[0]} .. {period[1]}: {_few(shown, quote=False)}. No candidate can detect "
            "them: drop them from the file, or change the monitoring period.")


def _strata(frame: pd.DataFrame, ids: np.ndarray, ref_cfg: dict, where: str
            ) -> tuple[np.ndarray | None, dict[str, float] | None]:
    field, areas = ref_cfg.get("stratum_field"), dict(ref_cfg.get("strata") or {})
    if not field:
        if areas:
            raise ReferenceDataError(
                f"strategy.reference.strata is set ({sorted(areas)}) but stratum_field is "
                "not: set stratum_field to the field of the reference file that holds each "
                "sample's stratum, or remove strata.")
        return None, None
    _need_field(frame, field, "stratum_field", where)
    raw = frame[field].to_numpy(dtype=object)
    blank = np.array([_is_blank(v) for v in raw], dtype=bool)
    if blank.any():
        raise ReferenceDataError(
            f"{where}: {int(blank.sum())} samples have no stratum in {field!r}: "
            f"{_few(ids[blank])}. Every sample of a stratified sample has a stratum.")
    stratum = np.array([_text(v) for v in raw], dtype=object)
    if not areas:
        raise ReferenceDataError(
            f"{where}: the samples have strata (field {field!r}: "
            f"{sorted(set(stratum))}) but strategy.reference.strata gives no areas; set "
            "strata to {stratum: area in hectares} for each of them.")
    areas = {str(k): float(v) for k, v in areas.items()}
    unknown = sorted(set(stratum) - set(areas))
    if unknown:
        raise ReferenceDataError(
            f"{where}: strata {unknown} in {field!r} have no area in "
            f"strategy.reference.strata (which has {sorted(areas)}); add their areas in "
            "hectares.")
    return stratum, areas


def _from_segments(db: Path, frame: gpd.GeoDataFrame, ids: np.ndarray, ref_cfg: dict,
                   period: tuple[str, str], where: str):
    """(keep, disturbed, kind, date) per feature of ``frame`` from nrt-validate's segments."""
    if not db.exists():
        raise ReferenceDataError(
            f"nrt-validate database {str(db)!r} does not exist; check "
            "strategy.reference.nrt_validate_db.")
    try:
        con = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "segments" not in tables:
                raise ReferenceDataError(
                    f"nrt-validate database {str(db)!r} has no table 'segments' (it has "
                    f"{sorted(tables)}). Point strategy.reference.nrt_validate_db at the "
                    "SQLite file nrt-validate's labelling interface saved.")
            seg = pd.read_sql_query("SELECT * FROM segments", con)
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        raise ReferenceDataError(
            f"nrt-validate database {str(db)!r} cannot be read as SQLite ({err}).") from err
    lacking = [c for c in SEGMENT_COLUMNS if c not in seg.columns]
    if lacking:
        raise ReferenceDataError(
            f"nrt-validate database {str(db)!r}: table 'segments' lacks the columns "
            f"{lacking} (it has {list(seg.columns)}); expected {list(SEGMENT_COLUMNS)}.")
    seg["fid"] = [_text(v) for v in seg["feature_id"]]
    unknown = sorted(set(seg["fid"]) - set(ids))
    if unknown:
        raise ReferenceDataError(
            f"nrt-validate database {str(db)!r} has segments of features {_few(unknown)} "
            f"that are not in the r{where[1:]} (field {ref_cfg['id_field']!r}, "
            "strategy.reference.id_field). Use the vector file the labelling was done on.")
    labels = seg["label"].to_numpy(dtype=object)
    _check_labels(labels, seg["fid"].to_numpy(dtype=object), ref_cfg,
                  f"nrt-validate database {str(db)!r}", "the segments' label column")
    begin = pd.to_numeric(seg["begin"], errors="coerce")
    disturbed_labels = set(ref_cfg["disturbed_labels"])
    undated = seg["label"].isin(disturbed_labels) & begin.isna()
    if undated.any():
        raise ReferenceDataError(
            f"nrt-validate database {str(db)!r}: disturbed segments without a begin date "
            f"(features {_few(seg['fid'][undated])}). Label them again in nrt-validate.")
    start, end = _days(period[0]), _days(period[1])
    seg = seg.assign(begin=begin).sort_values(["fid", "begin"], kind="stable")
    n = len(ids)
    keep = np.zeros(n, dtype=bool)
    disturbed = np.zeros(n, dtype=bool)
    kind = np.full(n, "", dtype=object)
    date = np.full(n, -1, dtype=np.int64)
    position = {sid: i for i, sid in enumerate(ids)}
    outside = []
    for fid, group in seg.groupby("fid", sort=False):
        i = position[fid]
        keep[i] = True
        hits = group[group["label"].isin(disturbed_labels)]
        if not len(hits):
            continue
        disturbed[i] = True
        inside = hits[(hits["begin"] >= start) & (hits["begin"] <= end)]
        if not len(inside):
            outside.append(f"{fid} ({_iso(hits['begin'].iloc[0])})")
            continue
        date[i] = int(inside["begin"].iloc[0])
        kind[i] = type_of_label(inside["label"].iloc[0])
    if outside:
        raise ReferenceDataError(
            f"nrt-validate database {str(db)!r}: {len(outside)} disturbed features have no "
            f"disturbed segment inside the monitoring period {period[0]} .. {period[1]}: "
            f"{_few(outside, quote=False)}. No candidate can detect them: drop them from the file, or "
            "change the monitoring period.")
    if (~keep).any():
        log.warning("%s: %d features have no segment in %s (not labelled yet) and are left "
                    "out: %s", where, int((~keep).sum()), db, _few(ids[~keep]))
    return keep, disturbed, kind, date


def read_reference(ref_cfg: dict, *, period: tuple[str, str]) -> ReferenceSamples:
    """Read the reference samples of ``strategy.reference`` (the validated dict).

    ``period``: the monitoring period (start, end) as ISO dates; disturbed samples must be
    dated inside it (inclusive). Returns the samples in the file's CRS (a CSV's: ``crs``).
    Raises :class:`ReferenceDataError` for every problem with the file.
    """
    if not ref_cfg.get("path"):
        raise ReferenceDataError(
            "strategy.reference.path is not set: give the vector or CSV file of reference "
            "samples (or, with the synthetic archive, leave reference empty to use its truth).")
    path = Path(ref_cfg["path"])
    where = f"Reference file {str(path)!r}"
    frame = _read_table(path, ref_cfg)
    if len(frame) == 0:
        raise ReferenceDataError(f"{where} holds no samples; add some.")
    ids = _ids(frame, ref_cfg, where)
    _check_geometries(frame, ids, where)

    if ref_cfg.get("nrt_validate_db"):
        keep, disturbed, kind, date = _from_segments(
            Path(ref_cfg["nrt_validate_db"]), frame, ids, ref_cfg, period, where)
        if not keep.any():
            raise ReferenceDataError(
                f"nrt-validate database {ref_cfg['nrt_validate_db']!r} labels none of the "
                f"{len(ids)} features of the r{where[1:]}: there are no samples. Label some first.")
    else:
        keep = np.ones(len(ids), dtype=bool)
        label_field = ref_cfg["label_field"]
        _need_field(frame, label_field, "label_field", where)
        labels = np.array([_text(v) if not _is_blank(v) else "" for v in frame[label_field]],
                          dtype=object)
        _check_labels(labels, ids, ref_cfg, where, f"field {label_field!r}")
        disturbed = np.isin(labels, list(ref_cfg["disturbed_labels"]))
        date = np.full(len(ids), -1, dtype=np.int64)
        kind = np.full(len(ids), "", dtype=object)
        if disturbed.any():
            _need_field(frame, ref_cfg["date_field"], "date_field", where)
            date[disturbed] = _parse_dates(frame[ref_cfg["date_field"]].to_numpy(dtype=object)[disturbed],
                                           ids[disturbed], ref_cfg["date_field"], where)
            _check_period(date, disturbed, ids, period, where)
            if ref_cfg.get("type_field"):
                _need_field(frame, ref_cfg["type_field"], "type_field", where)
                types = frame[ref_cfg["type_field"]].to_numpy(dtype=object)
                kind[disturbed] = ["" if _is_blank(v) else type_of_label(_text(v))
                                   for v in types[disturbed]]
        elif ref_cfg.get("type_field"):
            _need_field(frame, ref_cfg["type_field"], "type_field", where)

    stratum, areas = _strata(frame, ids, ref_cfg, where)
    geometry = frame.geometry.reset_index(drop=True)
    return ReferenceSamples(
        ids=ids, geometry=geometry, disturbed=disturbed, kind=kind, date=date,
        stratum=stratum, strata_area_ha=areas).subset(keep)


@dataclass(frozen=True, eq=False)
class SamplePixels:
    """The pixels of the samples on the processing grid.

    For each tile id that holds at least one sample pixel: ``rows[tile]``, ``cols[tile]``
    (int64, pixel row and column in the tile, 0 at the top-left) and ``sample[tile]``
    (int64, index into the samples). A pixel inside two overlapping polygons appears once
    per sample. ``dropped``: ids of the samples outside every tile (with
    ``drop_outside=True``); their indices are still those of the samples passed in.
    """

    rows: dict[str, np.ndarray]
    cols: dict[str, np.ndarray]
    sample: dict[str, np.ndarray]
    dropped: tuple[str, ...] = ()

    def samples_per_tile(self) -> dict[str, int]:
        return {tid: len(np.unique(s)) for tid, s in self.sample.items()}


def _point_pixel(x: np.ndarray, y: np.ndarray, tile: Tile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inside, row, col) of points: a pixel holds [left, right) x (bottom, top]."""
    xmin, _, _, ymax = tile.bounds
    height, width = tile.shape
    col = np.floor((x - xmin) / tile.resolution).astype(np.int64)
    row = np.floor((ymax - y) / tile.resolution).astype(np.int64)
    inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
    return inside, row, col


def _polygon_pixels(geom, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Rows and cols of the tile's pixels whose centre is inside ``geom``."""
    xmin, _, _, ymax = tile.bounds
    height, width = tile.shape
    res = tile.resolution
    gx0, gy0, gx1, gy1 = geom.bounds
    c0 = max(int(np.floor((gx0 - xmin) / res)), 0)
    c1 = min(int(np.ceil((gx1 - xmin) / res)), width)
    r0 = max(int(np.floor((ymax - gy1) / res)), 0)
    r1 = min(int(np.ceil((ymax - gy0) / res)), height)
    if c0 >= c1 or r0 >= r1:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
    xs = xmin + (cc + 0.5) * res
    ys = ymax - (rr + 0.5) * res
    inside = shapely.contains_xy(geom, xs, ys)
    return rr[inside].astype(np.int64), cc[inside].astype(np.int64)


def sample_pixels(samples: ReferenceSamples, tiles: Sequence[Tile], *,
                  drop_outside: bool = False) -> SamplePixels:
    """Map the samples onto the tiles' pixels.

    A point takes the pixel that contains it; a polygon every pixel whose centre is inside
    it, or, when no pixel centre is (a polygon smaller than a pixel), the pixel that
    contains its centroid. Samples outside every tile raise :class:`ReferenceDataError`, or
    with ``drop_outside=True`` are dropped with a logged warning and listed in
    ``dropped``.
    """
    if not tiles:
        raise ReferenceDataError("No tiles to map the reference samples onto; check strategy.tiles.")
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    found = np.zeros(len(samples), dtype=bool)
    by_crs: dict[str, gpd.GeoSeries] = {}
    is_point = (samples.geometry.geom_type == "Point").to_numpy()
    for tile in tiles:
        if tile.crs not in by_crs:
            by_crs[tile.crs] = samples.geometry.to_crs(tile.crs)
        geoms = by_crs[tile.crs].to_numpy()
        out = parts.setdefault(tile.id, [])
        idx = np.flatnonzero(is_point)
        if len(idx):
            inside, row, col = _point_pixel(shapely.get_x(geoms[idx]), shapely.get_y(geoms[idx]), tile)
            if inside.any():
                out.append((row[inside], col[inside], idx[inside]))
                found[idx[inside]] = True
        tile_box = tile.geometry
        for i in np.flatnonzero(~is_point):
            if not geoms[i].intersects(tile_box):
                continue
            rr, cc = _polygon_pixels(geoms[i], tile)
            if len(rr):
                out.append((rr, cc, np.full(len(rr), i, dtype=np.int64)))
                found[i] = True
    # polygons with no pixel centre inside: the pixel of their centroid
    for i in np.flatnonzero(~found & ~is_point):
        for tile in tiles:
            c = by_crs[tile.crs].iloc[i].centroid
            inside, row, col = _point_pixel(np.array([c.x]), np.array([c.y]), tile)
            if inside[0]:
                parts[tile.id].append((row, col, np.array([i], dtype=np.int64)))
                found[i] = True
                break
    dropped: tuple[str, ...] = ()
    if not found.all():
        missing = samples.ids[~found]
        extent = f"tiles {_few([t.id for t in tiles])}"
        if not drop_outside:
            raise ReferenceDataError(
                f"{len(missing)} of {len(samples)} reference samples are outside every tile "
                f"of the test area ({extent}): {_few(missing)}. The test area does not cover "
                "them: widen strategy.tiles/strategy.bbox, or drop them (drop_outside).")
        log.warning("%d of %d reference samples are outside the test area (%s) and are "
                    "dropped: %s", len(missing), len(samples), extent, _few(missing))
        dropped = tuple(str(i) for i in missing)
    rows, cols, which = {}, {}, {}
    for tid, chunks in parts.items():
        if not chunks:
            continue
        rows[tid] = np.concatenate([c[0] for c in chunks]).astype(np.int64)
        cols[tid] = np.concatenate([c[1] for c in chunks]).astype(np.int64)
        which[tid] = np.concatenate([c[2] for c in chunks]).astype(np.int64)
    return SamplePixels(rows=rows, cols=cols, sample=which, dropped=dropped)
