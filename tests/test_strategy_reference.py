"""Reference samples: real GeoPackage, CSV and nrt-validate SQLite files, their pixels on
small tiles, and every bad file failing with a message that says what to fix."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely.affinity
from pyproj import Transformer
from shapely.geometry import LineString, Point, Polygon, box

from forestwatch.config import validate_config
from forestwatch.grid import Tile
from forestwatch.strategy.reference import (
    ReferenceDataError,
    ReferenceSamples,
    read_reference,
    sample_pixels,
    type_of_label,
)

CRS = "EPSG:3035"
PERIOD = ("2023-01-01", "2023-12-31")
# Geometries are written in local coordinates shifted by (OX, OY) into Europe (where
# EPSG:3035 round-trips through lon/lat to under a millimetre); two 10 x 10 tiles of
# 10 m pixels side by side, local x 1000-1100 and 1100-1200, y 2000-2100.
OX, OY = 4_400_000.0, 3_000_000.0
WEST = Tile("X0010_Y0020", 10, 20, (OX + 1000, OY + 2000, OX + 1100, OY + 2100), CRS, 10.0)
EAST = Tile("X0011_Y0020", 11, 20, (OX + 1100, OY + 2000, OX + 1200, OY + 2100), CRS, 10.0)


def days(iso: str) -> int:
    return (dt.date.fromisoformat(iso) - dt.date(1970, 1, 1)).days


def ref_cfg(**reference) -> dict:
    """The validated strategy.reference section with these keys set."""
    return validate_config({"strategy": {"reference": reference}})["strategy"]["reference"]


def local(geom):
    return shapely.affinity.translate(geom, OX, OY)


def write_gpkg(path, rows: list[dict], geoms):
    """A GeoPackage of these attribute rows and geometries (local coordinates)."""
    frame = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=[local(g) for g in geoms], crs=CRS)
    frame.to_file(path, driver="GPKG")
    return path


def good_rows():
    return [
        {"id": "p1", "label": "disturbed", "date": "2023-03-04", "type": "Clear cut", "stratum": "loss"},
        {"id": "p2", "label": "stable", "date": None, "type": None, "stratum": "forest"},
        {"id": "poly", "label": "disturbed", "date": "2023-07-15", "type": "storm", "stratum": "loss"},
        {"id": "tiny", "label": "stable", "date": None, "type": None, "stratum": "forest"},
    ]


def good_geoms():
    return [Point(1015, 2085), Point(1195, 2005), box(1020, 2020, 1040, 2040),
            box(1152, 2052, 1154, 2054)]


STRATA = {"loss": 12.5, "forest": 300.0}


def test_a_geopackage_reads_back_to_exactly_the_expected_samples(tmp_path):
    path = write_gpkg(tmp_path / "ref.gpkg", good_rows(), good_geoms())
    cfg = ref_cfg(path=str(path), type_field="type", stratum_field="stratum", strata=STRATA)
    s = read_reference(cfg, period=PERIOD)
    assert isinstance(s, ReferenceSamples) and len(s) == 4
    assert s.ids.dtype == object and list(s.ids) == ["p1", "p2", "poly", "tiny"]
    assert s.disturbed.dtype == bool and list(s.disturbed) == [True, False, True, False]
    assert list(s.kind) == ["clear_cut", "", "storm", ""]
    assert s.date.dtype == np.int64
    assert list(s.date) == [days("2023-03-04"), -1, days("2023-07-15"), -1]
    assert list(s.stratum) == ["loss", "forest", "loss", "forest"]
    assert s.strata_area_ha == STRATA
    assert s.crs.to_epsg() == 3035
    assert [g.equals(local(e)) for g, e in zip(s.geometry, good_geoms(), strict=True)] == [True] * 4
    # to_crs keeps everything but the coordinates
    ll = s.to_crs("EPSG:4326")
    assert ll.crs.to_epsg() == 4326 and list(ll.ids) == list(s.ids)
    assert ll.to_crs(CRS).geometry.iloc[0].distance(local(Point(1015, 2085))) < 0.01


def test_a_csv_with_x_y_columns_in_lon_lat_reads_as_points(tmp_path):
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform([OX + 1015.0, OX + 1195.0], [OY + 2085.0, OY + 2005.0])
    path = tmp_path / "ref.csv"
    pd.DataFrame({"sample": [7, 8], "lon": lon, "lat": lat, "class": ["Loss", "Forest"],
                  "when": ["2023-05-01", ""]}).to_csv(path, index=False)
    cfg = ref_cfg(path=str(path), x_field="lon", y_field="lat", id_field="sample",
                  label_field="class", date_field="when", disturbed_labels=["Loss"],
                  stable_labels=["Forest"])
    s = read_reference(cfg, period=PERIOD)
    assert list(s.ids) == ["7", "8"]
    assert list(s.disturbed) == [True, False]
    assert list(s.date) == [days("2023-05-01"), -1]
    assert list(s.kind) == ["", ""] and s.stratum is None and s.strata_area_ha is None
    assert s.crs.to_epsg() == 4326
    pixels = sample_pixels(s, [WEST, EAST])
    assert pixels.rows == {"X0010_Y0020": [1], "X0011_Y0020": [9]}
    assert pixels.cols == {"X0010_Y0020": [1], "X0011_Y0020": [9]}


def write_segments_db(path, rows, table="segments"):
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, begin INTEGER, end INTEGER, "
                "label TEXT, feature_id INTEGER)")
    con.executemany(f"INSERT INTO {table} (begin, end, label, feature_id) VALUES (?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    return path


def nrt_validate_files(tmp_path, segments):
    geoms = [Point(1005 + 10 * i, 2095) for i in range(5)]
    vec = write_gpkg(tmp_path / "features.gpkg", [{"fid_": i} for i in range(1, 6)], geoms)
    db = write_segments_db(tmp_path / "labels.db", segments)
    return ref_cfg(path=str(vec), id_field="fid_", nrt_validate_db=str(db),
                   disturbed_labels=["Clear cut", "Storm"], stable_labels=["Stable", "Regrowth"])


def test_an_nrt_validate_database_gives_labels_dates_and_types(tmp_path, caplog):
    d = days
    cfg = nrt_validate_files(tmp_path, [
        # 1: stable throughout (two stable segments)
        (d("2018-01-01"), d("2021-01-01"), "Stable", 1), (d("2021-01-01"), d("2023-12-31"), "Regrowth", 1),
        # 2: stable, then a clear cut in the period (segments given out of order)
        (d("2023-06-10"), d("2023-12-31"), "Clear cut", 2), (d("2018-01-01"), d("2023-06-10"), "Stable", 2),
        # 3: a storm before the period and one inside: the first inside counts
        (d("2020-02-01"), d("2020-09-01"), "Storm", 3), (d("2020-09-01"), d("2023-02-01"), "Stable", 3),
        (d("2023-02-01"), d("2023-03-01"), "Storm", 3), (d("2023-09-01"), d("2023-12-01"), "Clear cut", 3),
        # 4: disturbed at the first day of the period
        (d("2023-01-01"), d("2023-12-31"), "Clear cut", 4),
        # 5: no segments, not labelled yet
    ])
    with caplog.at_level(logging.WARNING, logger="forestwatch.strategy.reference"):
        s = read_reference(cfg, period=PERIOD)
    assert list(s.ids) == ["1", "2", "3", "4"]
    assert list(s.disturbed) == [False, True, True, True]
    assert list(s.date) == [-1, d("2023-06-10"), d("2023-02-01"), d("2023-01-01")]
    assert list(s.kind) == ["", "clear_cut", "storm", "clear_cut"]
    assert [g.x - OX for g in s.geometry] == [1005, 1015, 1025, 1035]
    assert "1 features have no segment" in caplog.text and "'5'" in caplog.text


def test_the_type_of_a_label_is_lower_case_with_underscores():
    assert type_of_label("Clear cut") == "clear_cut"
    assert type_of_label("  Partial   Dieback ") == "partial_dieback"
    assert type_of_label("storm") == "storm"


def test_points_and_polygons_map_to_the_expected_pixels(tmp_path):
    rows = good_rows() + [{"id": "edge", "label": "stable", "date": None, "type": None,
                           "stratum": "forest"}]
    geoms = good_geoms() + [Point(1100, 2050)]  # on the west/east tile border
    path = write_gpkg(tmp_path / "ref.gpkg", rows, geoms)
    s = read_reference(ref_cfg(path=str(path)), period=PERIOD)
    px = sample_pixels(s, [WEST, EAST])
    assert px.dropped == ()
    west = sorted(zip(px.sample["X0010_Y0020"], px.rows["X0010_Y0020"], px.cols["X0010_Y0020"],
                      strict=True))
    # p1 (0): x 1015 -> col 1, y 2085 -> row 1; poly (2): x 1020-1040, y 2020-2040 -> the
    # four pixels whose centres (1025/1035, 2025/2035) are inside: rows 6-7, cols 2-3
    assert west == [(0, 1, 1), (2, 6, 2), (2, 6, 3), (2, 7, 2), (2, 7, 3)]
    east = sorted(zip(px.sample["X0011_Y0020"], px.rows["X0011_Y0020"], px.cols["X0011_Y0020"],
                      strict=True))
    # p2 (1): x 1195 -> col 9, y 2005 -> row 9; tiny (3), 2 m wide, no pixel centre inside:
    # the pixel of its centroid (1153, 2053) -> col 5, row 4; edge (4): a pixel's left edge
    # belongs to it, so x 1100 is col 0 of the east tile, y 2050 -> row 5
    assert east == [(1, 9, 9), (3, 4, 5), (4, 5, 0)]
    for arrays in (px.rows, px.cols, px.sample):
        assert all(a.dtype == np.int64 for a in arrays.values())
    assert px.samples_per_tile() == {"X0010_Y0020": 2, "X0011_Y0020": 3}


def test_a_polygon_across_two_tiles_takes_pixels_in_both(tmp_path):
    path = write_gpkg(tmp_path / "ref.gpkg", [{"id": "wide", "label": "stable"}],
                      [box(1090, 2090, 1110, 2100)])
    px = sample_pixels(read_reference(ref_cfg(path=str(path)), period=PERIOD), [WEST, EAST])
    assert list(zip(px.rows["X0010_Y0020"], px.cols["X0010_Y0020"], strict=True)) == [(0, 9)]
    assert list(zip(px.rows["X0011_Y0020"], px.cols["X0011_Y0020"], strict=True)) == [(0, 0)]


def test_samples_outside_every_tile_fail_or_are_dropped_with_a_warning(tmp_path, caplog):
    rows = [{"id": f"s{i}", "label": "stable"} for i in range(4)]
    geoms = [Point(1015, 2085), Point(5000, 5000), box(9000, 9000, 9100, 9100), Point(999, 2050)]
    s = read_reference(ref_cfg(path=str(write_gpkg(tmp_path / "r.gpkg", rows, geoms))), period=PERIOD)
    with pytest.raises(ReferenceDataError) as err:
        sample_pixels(s, [WEST])
    msg = str(err.value)
    assert "3 of 4 reference samples are outside every tile" in msg
    assert "'s1', 's2', 's3'" in msg and "X0010_Y0020" in msg
    assert "does not cover them" in msg and "drop_outside" in msg
    with caplog.at_level(logging.WARNING, logger="forestwatch.strategy.reference"):
        px = sample_pixels(s, [WEST], drop_outside=True)
    assert px.dropped == ("s1", "s2", "s3")
    assert list(px.sample["X0010_Y0020"]) == [0]
    assert "3 of 4 reference samples are outside the test area" in caplog.text


# ---- bad files -------------------------------------------------------------------------

def expect(cfg, *facts, period=PERIOD):
    with pytest.raises(ReferenceDataError) as err:
        read_reference(cfg, period=period)
    for fact in facts:
        assert fact in str(err.value), f"{fact!r} not in {str(err.value)!r}"
    return str(err.value)


def test_a_missing_file_says_which_and_which_key(tmp_path):
    expect(ref_cfg(path=str(tmp_path / "nope.gpkg")), "nope.gpkg", "does not exist",
           "strategy.reference.path")
    expect(ref_cfg(), "strategy.reference.path is not set")


def test_an_unreadable_file_says_what_formats_work(tmp_path):
    path = tmp_path / "ref.gpkg"
    path.write_bytes(b"this is not a geopackage")
    expect(ref_cfg(path=str(path)), "ref.gpkg", "cannot be read as a vector file",
           "GeoPackage, GeoJSON or CSV")


def test_a_table_without_geometry_is_refused(tmp_path):
    path = tmp_path / "table.gpkg"
    pyogrio.write_dataframe(pd.DataFrame({"id": ["a"], "label": ["stable"]}), path, layer="t")
    expect(ref_cfg(path=str(path)), "table.gpkg", "has no geometry column", "x_field/y_field")


def test_a_file_without_crs_is_refused(tmp_path):
    path = tmp_path / "nocrs.gpkg"
    with pytest.warns(UserWarning):
        gpd.GeoDataFrame({"id": ["a"], "label": ["stable"]}, geometry=[Point(0, 0)]).to_file(path)
    expect(ref_cfg(path=str(path)), "nocrs.gpkg", "has no CRS")


def test_empty_invalid_and_line_geometries_name_the_samples(tmp_path):
    rows = [{"id": "ok", "label": "stable"}, {"id": "hollow", "label": "stable"}]
    expect(ref_cfg(path=str(write_gpkg(tmp_path / "a.gpkg", rows, [Point(1, 1), Polygon()]))),
           "a.gpkg", "1 samples have an empty geometry", "'hollow'")
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    expect(ref_cfg(path=str(write_gpkg(tmp_path / "b.gpkg", rows, [Point(1, 1), bowtie]))),
           "b.gpkg", "invalid geometries", "'hollow'", "Self-intersection", "make_valid")
    line = LineString([(0, 0), (5, 5)])
    expect(ref_cfg(path=str(write_gpkg(tmp_path / "c.gpkg", rows, [Point(1, 1), line]))),
           "c.gpkg", "points or polygons", "LineString", "'hollow'")


def test_missing_fields_name_the_field_the_key_and_the_fields_there_are(tmp_path):
    path = write_gpkg(tmp_path / "r.gpkg", [{"name": "a", "label": "stable"}], [Point(1, 1)])
    expect(ref_cfg(path=str(path)), "no field 'id'", "strategy.reference.id_field",
           "['name', 'label']")
    path = write_gpkg(tmp_path / "s.gpkg", [{"id": "a", "class": "stable"}], [Point(1, 1)])
    expect(ref_cfg(path=str(path)), "no field 'label'", "strategy.reference.label_field",
           "['id', 'class']")
    path = write_gpkg(tmp_path / "t.gpkg", [{"id": "a", "label": "disturbed"}], [Point(1, 1)])
    expect(ref_cfg(path=str(path)), "no field 'date'", "strategy.reference.date_field")
    expect(ref_cfg(path=str(path), type_field="cause"), "no field 'date'")


def test_unknown_labels_are_listed_with_the_configured_ones(tmp_path):
    rows = [{"id": "a", "label": "stable"}, {"id": "b", "label": "Cloud"}, {"id": "c", "label": "?"}]
    path = write_gpkg(tmp_path / "r.gpkg", rows, [Point(1, 1)] * 3)
    expect(ref_cfg(path=str(path)), "labels ['?', 'Cloud']", "disturbed_labels ['disturbed']",
           "stable_labels ['stable']", "'b', 'c'", "Add them to one of the two lists")


def test_disturbed_samples_without_or_with_a_bad_date(tmp_path):
    rows = [{"id": "a", "label": "disturbed", "date": "2023-02-01"},
            {"id": "b", "label": "disturbed", "date": None}]
    path = write_gpkg(tmp_path / "r.gpkg", rows, [Point(1, 1)] * 2)
    expect(ref_cfg(path=str(path)), "1 disturbed samples have no date in 'date'", "'b'",
           "label it stable")
    rows[1]["date"] = "03/02/2023"
    path = write_gpkg(tmp_path / "s.gpkg", rows, [Point(1, 1)] * 2)
    expect(ref_cfg(path=str(path)), "not an ISO date", "b '03/02/2023'")


def test_disturbance_dates_outside_the_period_list_ids_and_the_period(tmp_path):
    rows = [{"id": f"d{i}", "label": "disturbed", "date": f"2022-0{i + 1}-01"} for i in range(7)]
    rows.append({"id": "in", "label": "disturbed", "date": "2023-06-01"})
    path = write_gpkg(tmp_path / "r.gpkg", rows, [Point(1, 1)] * 8)
    msg = expect(ref_cfg(path=str(path)), "7 disturbed samples are dated outside",
                 "2023-01-01 .. 2023-12-31", "d0 (2022-01-01), d1", "and 2 more",
                 "drop them from the file, or change the monitoring period")
    assert "in (" not in msg


def test_strata_need_areas_for_every_stratum(tmp_path):
    path = write_gpkg(tmp_path / "r.gpkg", good_rows(), good_geoms())
    expect(ref_cfg(path=str(path), stratum_field="stratum"), "the samples have strata",
           "['forest', 'loss']", "strategy.reference.strata gives no areas")
    expect(ref_cfg(path=str(path), stratum_field="stratum", strata={"loss": 1.0}),
           "strata ['forest']", "no area in strategy.reference.strata", "(which has ['loss'])")
    expect(ref_cfg(path=str(path), strata={"loss": 1.0}), "stratum_field is not")
    expect(ref_cfg(path=str(path), stratum_field="zone", strata=STRATA), "no field 'zone'",
           "strategy.reference.stratum_field")


def test_duplicate_ids_are_listed(tmp_path):
    rows = [{"id": i, "label": "stable"} for i in ("a", "b", "a", "c", "b")]
    path = write_gpkg(tmp_path / "r.gpkg", rows, [Point(1, 1)] * 5)
    expect(ref_cfg(path=str(path)), "duplicate ids in 'id'", "'a', 'b'", "Ids must be unique")


def test_an_nrt_validate_database_without_segments_or_with_unknown_features(tmp_path):
    vec = write_gpkg(tmp_path / "f.gpkg", [{"id": 1}, {"id": 2}], [Point(1, 1), Point(2, 2)])
    db = write_segments_db(tmp_path / "other.db", [(0, 10, "Stable", 1)], table="labels")
    expect(ref_cfg(path=str(vec), nrt_validate_db=str(db)), "other.db",
           "has no table 'segments'", "['labels']")
    db = write_segments_db(tmp_path / "seg.db", [(19400, 19500, "stable", 1),
                                                 (19400, 19500, "stable", 9)])
    expect(ref_cfg(path=str(vec), nrt_validate_db=str(db)), "seg.db",
           "segments of features '9'", "f.gpkg", "strategy.reference.id_field")
    expect(ref_cfg(path=str(vec), nrt_validate_db=str(tmp_path / "gone.db")),
           "gone.db", "does not exist", "nrt_validate_db")
    db = write_segments_db(tmp_path / "old.db", [(days("2021-05-01"), 19500, "disturbed", 2)])
    expect(ref_cfg(path=str(vec), nrt_validate_db=str(db)), "no disturbed segment inside",
           "2 (2021-05-01)", "change the monitoring period")
    db = write_segments_db(tmp_path / "odd.db", [(19400, 19500, "Windthrow", 1)])
    expect(ref_cfg(path=str(vec), nrt_validate_db=str(db)), "labels ['Windthrow']",
           "stable_labels ['stable']")
    db = write_segments_db(tmp_path / "none.db", [])
    expect(ref_cfg(path=str(vec), nrt_validate_db=str(db)), "labels none of the 2 features")


def test_a_csv_without_its_x_y_columns_or_coordinates(tmp_path):
    path = tmp_path / "r.csv"
    pd.DataFrame({"id": ["a"], "lon": [12.0], "lat": [50.0], "label": ["stable"]}).to_csv(path, index=False)
    expect(ref_cfg(path=str(path)), "r.csv", "no field 'x'", "strategy.reference.x_field",
           "['id', 'lon', 'lat', 'label']")
    pd.DataFrame({"id": ["a", "b"], "x": [12.0, None], "y": [50.0, 50.1],
                  "label": ["stable"] * 2}).to_csv(path, index=False)
    expect(ref_cfg(path=str(path)), "1 rows have no number in 'x'", "'b'")


def test_zero_samples_is_an_error(tmp_path):
    path = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"id": [], "label": []}, geometry=[], crs=CRS).to_file(path)
    expect(ref_cfg(path=str(path)), "empty.gpkg", "holds no samples")
    csv = tmp_path / "empty.csv"
    csv.write_text("id,x,y,label\n")
    expect(ref_cfg(path=str(csv)), "empty.csv", "holds no samples")


def test_geojson_and_a_named_geopackage_layer_read_too(tmp_path):
    rows, geoms = good_rows()[:2], good_geoms()[:2]
    frame = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=[local(g) for g in geoms], crs=CRS)
    frame.to_file(tmp_path / "ref.geojson", driver="GeoJSON")
    s = read_reference(ref_cfg(path=str(tmp_path / "ref.geojson")), period=PERIOD)
    assert list(s.ids) == ["p1", "p2"] and list(s.disturbed) == [True, False]
    gpkg = tmp_path / "two.gpkg"
    frame.to_file(gpkg, layer="other", driver="GPKG")
    frame.iloc[1:].to_file(gpkg, layer="samples", driver="GPKG")
    s = read_reference(ref_cfg(path=str(gpkg), layer="samples"), period=PERIOD)
    assert list(s.ids) == ["p2"]
    expect(ref_cfg(path=str(gpkg), layer="nope"), "(layer 'nope')", "cannot be read")
