"""The common grid: tiles from a bbox or a vector AOI, stable ids, GeoBoxes, tiles.gpkg."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import box

from forestwatch.config import validate_config
from forestwatch.grid import make_tiles, parse_tile_id, tile_by_id, write_tiles


def test_default_aoi_spans_two_utm_zones_and_gives_four_tiles():
    cfg = validate_config({})
    lon_min, _, lon_max, _ = cfg["aoi"]["bbox"]
    assert lon_min < 12.0 < lon_max  # the UTM 32/33 boundary
    tiles = make_tiles(cfg)
    assert [t.id for t in tiles] == ["X1486_Y1014", "X1486_Y1015", "X1487_Y1014", "X1487_Y1015"]
    for t in tiles:
        assert t.shape == (150, 150)
        assert t.bounds[2] - t.bounds[0] == 3000
        # id <-> lower-left corner on the 3000 m grid from origin (0, 0)
        assert t.bounds[0] == t.col * 3000 and t.bounds[1] == t.row * 3000


def test_tile_ids_are_stable_when_the_aoi_grows():
    small = {t.id: t for t in make_tiles(validate_config({}))}
    big_cfg = validate_config({"aoi": {"bbox": [11.85, 50.40, 12.10, 50.60]}})
    big = {t.id: t for t in make_tiles(big_cfg)}
    assert len(big) > len(small)
    for tid, tile in small.items():
        assert big[tid].bounds == tile.bounds


def test_tile_by_id_round_trips():
    cfg = validate_config({})
    for tile in make_tiles(cfg):
        again = tile_by_id(cfg, tile.id)
        assert again == tile
        assert again.transform == tile.transform


def test_geobox_has_grid_crs_resolution_and_shape():
    tile = make_tiles(validate_config({"grid": {"resolution": 10, "tile_size": 1500}}))[0]
    gbox = tile.geobox
    assert gbox.crs.epsg == 3035
    assert gbox.shape == (150, 150)
    assert gbox.resolution.x == 10 and gbox.resolution.y == -10
    assert tuple(gbox.boundingbox) == pytest.approx(tile.bounds)
    # bbox_lonlat contains the tile's corners
    lon0, lat0, lon1, lat1 = tile.bbox_lonlat()
    to_ll = Transformer.from_crs(3035, 4326, always_xy=True)
    for x in tile.bounds[0::2]:
        for y in tile.bounds[1::2]:
            lon, lat = to_ll.transform(x, y)
            assert lon0 - 1e-9 <= lon <= lon1 + 1e-9 and lat0 - 1e-9 <= lat <= lat1 + 1e-9


def test_aoi_in_grid_crs_and_as_a_vector_file(tmp_path):
    cfg = validate_config({"aoi": {"bbox": [4458100, 3042100, 4463900, 3047900], "crs": "EPSG:3035"}})
    ids = [t.id for t in make_tiles(cfg)]
    assert ids == ["X1486_Y1014", "X1486_Y1015", "X1487_Y1014", "X1487_Y1015"]

    # a vector AOI in another CRS covering only the north-west tile's interior
    to_ll = Transformer.from_crs(3035, 4326, always_xy=True)
    x0, y0 = to_ll.transform(4458500, 3045500)
    x1, y1 = to_ll.transform(4460500, 3047500)
    path = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame({"name": ["stand"]}, geometry=[box(x0, y0, x1, y1)], crs=4326).to_file(path)
    cfg = validate_config({"aoi": {"file": str(path)}})
    assert [t.id for t in make_tiles(cfg)] == ["X1486_Y1015"]


def test_aoi_touching_a_tile_edge_does_not_include_the_neighbour():
    cfg = validate_config({"aoi": {"bbox": [4458000, 3042000, 4461000, 3045000], "crs": "EPSG:3035"}})
    assert [t.id for t in make_tiles(cfg)] == ["X1486_Y1014"]


def test_negative_coordinates_give_signed_ids_that_parse_back():
    cfg = validate_config({"aoi": {"bbox": [-5000, -2000, -1000, 1000], "crs": "EPSG:32633"},
                           "grid": {"crs": "EPSG:32633", "tile_size": 2000}})
    tiles = make_tiles(cfg)
    assert "X-003_Y-001" in [t.id for t in tiles]
    for t in tiles:
        assert parse_tile_id(t.id) == (t.col, t.row)
        assert tile_by_id(cfg, t.id) == t


def test_write_tiles_gpkg(tmp_path):
    cfg = validate_config({})
    tiles = make_tiles(cfg)
    out = tmp_path / "grid" / "tiles.gpkg"
    write_tiles(tiles, out)
    frame = gpd.read_file(out, layer="tiles")
    assert frame.crs.to_epsg() == 3035
    assert list(frame["tile_id"]) == [t.id for t in tiles]
    assert {"col", "row", "resolution", "width", "height"} <= set(frame.columns)
    assert frame.geometry.iloc[0].bounds == pytest.approx(tiles[0].bounds)
    assert [p.name for p in out.parent.iterdir()] == ["tiles.gpkg"]  # no temp file left


def test_lonlat_boxes_are_odc_geos_geographic_extents_to_the_last_bit():
    """forestwatch.grid.lonlat_boxes (all tiles at once) gives each tile's
    ``geobox.geographic_extent.boundingbox`` exactly: grids in LAEA, UTM (one near the
    antimeridian, with tiles outside its domain), Web Mercator and lon/lat, origins off the
    metre, sizes that are not a whole number of pixels, negative columns;
    Tile.bbox_lonlat gives the same."""
    import random

    from forestwatch.grid import Tile, lonlat_boxes, tile_id

    rng = random.Random(15)
    tiles = []
    for crs, (x0, y0), res, sizes in (
            ("EPSG:3035", (4_480_000, 3_040_000), 20.0, (500, 3000, 10_000, 20_000)),
            ("EPSG:32633", (300_000.5, 5_500_000.25), 10.0, (3000, 7330.7)),
            ("EPSG:32601", (166_021.44, 0.0), 20.0, (10_000, 100_000)),
            ("EPSG:3857", (-20_037_508.34, 0.0), 30.0, (30_000,)),
            ("EPSG:4326", (10.0, 50.0), 0.0002, (0.1,))):
        for _ in range(40):
            size = rng.choice(sizes)
            col, row = rng.randrange(-5, 300), rng.randrange(0, 300)
            bounds = (x0 + col * size, y0 + row * size, x0 + (col + 1) * size,
                      y0 + (row + 1) * size)
            tiles.append(Tile(tile_id(col, row), col, row, bounds, crs, res))
    # across a UTM zone's central meridian, far from the equator: the edge nearer the pole
    # bulges towards it between two points of the outline, so the box depends on them
    tiles += [Tile("X0005_Y0070", 5, 70, (453_333.3, 7_000_000.0, 553_333.3, 7_100_000.0),
                   "EPSG:32633", 20.0),
              Tile("X0004_Y0020", 4, 20, (433_333.3, 2_000_000.0, 533_333.3, 2_100_000.0),
                   "EPSG:32733", 20.0)]
    rng.shuffle(tiles)  # the CRSs and sizes mixed in one call
    expected = np.array([tuple(t.geobox.geographic_extent.boundingbox) for t in tiles])
    # exactly, NaN where nothing of a tile projects (as odc-geo's empty footprint)
    np.testing.assert_array_equal(np.array(lonlat_boxes(tiles)), expected)
    np.testing.assert_array_equal(np.array([t.bbox_lonlat() for t in tiles[:20]]),
                                  expected[:20])
    assert np.isfinite(expected).all(axis=1).sum() > 150
    assert lonlat_boxes([]) == []
