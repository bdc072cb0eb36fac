"""Alert polygons from hand-drawn alert layers on two neighbouring tiles: the join across
the tile edge, the minimum mapping unit after the join, the ids kept, merged and cleared
from one run to the next, and the area statistics (every number counted from the
drawing)."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from affine import Affine
from shapely.geometry import Point, box

from forestwatch.alerts.ladder import AlertLayers
from forestwatch.alerts.polygons import merge_alerts, tile_pieces, write_pieces
from forestwatch.alerts.statistics import RegionsError, write_statistics
from forestwatch.reports import alert_report_arrays

CRS = "EPSG:3035"
RES = 20.0
SIZE = 10  # px per tile side
X0, Y0 = 4_000_000.0, 3_000_000.0
TILES = {"A": 0, "B": 1}  # B is east of A
DAY = (dt.date(2024, 5, 10) - dt.date(1970, 1, 1)).days


def _transform(col: int) -> Affine:
    return Affine(RES, 0, X0 + col * SIZE * RES, 0, -RES, Y0)


def _layers(status: np.ndarray, first: int = DAY, confirmed: int = 0) -> AlertLayers:
    layers = AlertLayers.start(np.ones(status.shape, dtype=np.uint8))
    layers.status[:] = status
    alert = status > 0
    layers.first_date[alert] = first
    layers.confirmed_date[status == 3] = confirmed or first + 20
    layers.count[alert] = 2
    layers.evidence[alert] = 3.0  # confidence 50
    layers.max_loss[alert] = 0.25
    return layers


def _write(tmp_path, run: str, statuses: dict[str, np.ndarray], **kw) -> list[str]:
    paths = []
    for tile, status in statuses.items():
        arrays = alert_report_arrays(_layers(status, **kw), confidence_half=3.0)
        pieces = tile_pieces(arrays, transform=_transform(TILES[tile]), crs=CRS, tile_id=tile)
        path = tmp_path / run / f"{tile}.gpkg"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_pieces(pieces, path)
        paths.append(str(path))
    return paths


def _blank():
    return {"A": np.zeros((SIZE, SIZE), np.uint8), "B": np.zeros((SIZE, SIZE), np.uint8)}


def test_an_alert_cut_by_the_tile_edge_is_one_polygon_kept_whole_by_the_mmu(tmp_path):
    s = _blank()
    s["A"][2:5, 7:10] = 1  # 9 px on A's east edge ...
    s["B"][2:5, 0:3] = 2   # ... and 9 px on B's west edge: 18 px = 0.72 ha together
    s["B"][8, 8] = 1        # 1 px alone: 0.04 ha
    s["A"][7:9, 0:2] = 3    # 4 px alone: 0.16 ha
    out = tmp_path / "alerts.gpkg"
    alerts = merge_alerts(_write(tmp_path, "r1", s), out, min_mapping_unit_ha=0.5,
                          pixel_size_m=RES)
    assert len(alerts) == 1  # each half (0.36 ha) would have fallen under the 0.5 ha MMU
    a = alerts.iloc[0]
    assert a["tiles"] == "A,B" and a["n_pixels"] == 18 and a["status"] == 2
    assert a["area_ha"] == pytest.approx(18 * 0.04) == pytest.approx(a.geometry.area / 1e4)
    assert a.geometry.geom_type == "Polygon"  # exactly joined, no sliver, no multipart
    assert a.geometry.equals(box(X0 + 7 * RES, Y0 - 5 * RES, X0 + 13 * RES, Y0 - 2 * RES))
    read = gpd.read_file(out, layer="alerts")
    assert read.crs.to_epsg() == 3035
    assert pd.api.types.is_datetime64_any_dtype(read["first_date"])
    assert read["first_date"].iloc[0] == pd.Timestamp("2024-05-10")
    assert pd.isna(read["confirmed_date"].iloc[0])
    info = pyogrio.read_info(out, layer="alerts")
    assert dict(zip(info["fields"], info["dtypes"], strict=True))["first_date"].startswith(
        "datetime")

    # everything counts in the statistics, whatever the MMU
    table = write_statistics(_write(tmp_path, "r1", s), pixel_size_m=RES, crs=CRS,
                             by_tile_out=tmp_path / "by_tile.csv")
    got = {(r.tile, r.month, r.status): r.pixels for r in table.itertuples()}
    assert got == {("A", "2024-05", 1): 9, ("A", "2024-05", 3): 4, ("B", "2024-05", 1): 1,
                   ("B", "2024-05", 2): 9}
    assert table["area_ha"].sum() == pytest.approx(23 * 0.04)


def test_ids_survive_growth_and_confirmation_the_older_survives_a_merge(tmp_path):
    out = tmp_path / "alerts.gpkg"
    s = _blank()
    s["A"][1:4, 1:4] = 1   # alert 1 (older)
    s["B"][1:4, 5:8] = 1   # alert 2
    s["A"][7:10, 7:10] = 2  # alert 3, to be cleared
    run1 = merge_alerts(_write(tmp_path, "r1", s, first=DAY - 30), out,
                        min_mapping_unit_ha=0.3, pixel_size_m=RES)
    # new ids in order of first detection, then north to south, west to east
    def id_at(frame, col, row):
        x, y = X0 + (col + 0.5) * RES, Y0 - (row + 0.5) * RES
        return int(frame[frame.geometry.contains(Point(x, y))]["alert_id"].iloc[0])
    assert (id_at(run1, 2, 2), id_at(run1, 16, 2), id_at(run1, 8, 8)) == (1, 2, 3)
    id_a = 1

    # next run: alert 1 grows east across the edge until it meets alert 2, and is
    # confirmed; alert 3 has returned to normal; a new alert appears
    s = _blank()
    s["A"][1:4, 1:10] = 3
    s["B"][1:4, 0:8] = 3
    s["B"][7:10, 0:3] = 1
    run2 = merge_alerts(_write(tmp_path, "r2", s, first=DAY - 30), out,
                        min_mapping_unit_ha=0.3, pixel_size_m=RES)
    assert len(run2) == 2
    merged = run2[run2["tiles"] == "A,B"].iloc[0]
    assert merged["status"] == 3 and merged["alert_id"] == id_a
    new = run2[run2["tiles"] == "B"].iloc[0]
    assert new["alert_id"] == 4  # above every id used so far
    history = pyogrio.read_dataframe(out, layer="history", read_geometry=False)
    events = {(int(r.alert_id), r.event, None if pd.isna(r.into) else int(r.into))
              for r in history.itertuples()}
    assert events == {(2, "merged", id_a), (3, "cleared", None)}  # the older (1) survives

    # a third run with nothing new keeps every id, records nothing more
    run3 = merge_alerts(_write(tmp_path, "r2", s, first=DAY - 30), out,
                        min_mapping_unit_ha=0.3, pixel_size_m=RES)
    assert sorted(run3["alert_id"]) == sorted(run2["alert_id"])
    assert len(pyogrio.read_dataframe(out, layer="history", read_geometry=False)) == 2


def test_no_alert_writes_empty_layers(tmp_path):
    out = tmp_path / "alerts.gpkg"
    alerts = merge_alerts(_write(tmp_path, "r1", _blank()), out, min_mapping_unit_ha=0.5,
                          pixel_size_m=RES)
    assert len(alerts) == 0 and out.exists()


def test_area_by_region_and_bad_region_files(tmp_path):
    s = _blank()
    s["A"][0:10, 0:10] = 3  # the whole of tile A: 4 ha
    pieces = _write(tmp_path, "r1", s)
    west = box(X0, Y0 - 10 * RES, X0 + 5 * RES, Y0)  # half of A
    regions = gpd.GeoDataFrame({"name": ["west"]}, geometry=[west], crs=CRS).to_crs(4326)
    path = tmp_path / "regions.gpkg"
    regions.to_file(path)
    write_statistics(pieces, pixel_size_m=RES, crs=CRS, by_tile_out=tmp_path / "t.csv",
                     regions_path=path, regions_field="name",
                     by_region_out=tmp_path / "r.csv")
    by_region = pd.read_csv(tmp_path / "r.csv")
    assert by_region["region"].tolist() == ["west"]
    assert by_region["area_ha"].iloc[0] == pytest.approx(2.0, rel=1e-3)  # reprojected back
    with pytest.raises(RegionsError, match="no attribute 'district'.*it has: name"):
        write_statistics(pieces, pixel_size_m=RES, crs=CRS, by_tile_out=tmp_path / "t.csv",
                         regions_path=path, regions_field="district",
                         by_region_out=tmp_path / "r.csv")
    (tmp_path / "bad.gpkg").write_text("not a vector file")
    with pytest.raises(RegionsError, match="cannot be read as a vector file"):
        write_statistics(pieces, pixel_size_m=RES, crs=CRS, by_tile_out=tmp_path / "t.csv",
                         regions_path=tmp_path / "bad.gpkg", by_region_out=tmp_path / "r.csv")


def test_the_piece_minima_and_maxima_are_ndimages():
    """A piece's statistics come from one sort of the labelled pixels
    (``polygons._PerLabel``); scipy's per-label functions are the oracle, on random
    labellings of random rasters."""
    from scipy import ndimage

    from forestwatch.alerts.polygons import _PerLabel

    rng = np.random.default_rng(7)
    for _case in range(40):
        shape = tuple(rng.integers(1, 60, size=2))
        labels, n = ndimage.label(rng.random(shape) < rng.uniform(0.05, 0.9))
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        per = _PerLabel(labels, n)
        for values in (rng.integers(-5, 20_000, size=shape),
                       rng.integers(0, 4, size=shape).astype(np.uint8),
                       rng.normal(size=shape)):
            np.testing.assert_array_equal(per.minimum(values),
                                          ndimage.minimum(values, labels, idx))
            np.testing.assert_array_equal(per.maximum(values),
                                          ndimage.maximum(values, labels, idx))
        np.testing.assert_array_equal(per.counts,
                                      ndimage.sum(np.ones_like(labels), labels, idx))
    with pytest.raises(ValueError, match="labels are not 1..3"):
        _PerLabel(np.array([[1, 0, 3]]), 3)
