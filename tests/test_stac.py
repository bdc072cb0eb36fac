"""Search, solar-day grouping, DN -> reflectance per item, cloud masking, indices."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from forestwatch.grid import make_tiles
from forestwatch.stac import (
    _scale_offset,
    band_keys,
    load_reflectance,
    read_item_collection,
    search_items,
    spectral_index,
)


def write_tiled(path, data: np.ndarray, transform: Affine, *, overviews=(), **creation):
    """``data`` (one band) as a tiled GeoTIFF in EPSG:32633 with 256 px blocks and nodata 0,
    with ``overviews`` (factors, averaged); ``creation`` adds or overrides options."""
    from rasterio.enums import Resampling

    height, width = data.shape
    options = dict(driver="GTiff", width=width, height=height, count=1, dtype=data.dtype,
                   crs="EPSG:32633", transform=transform, nodata=0, tiled=True,
                   blockxsize=256, blockysize=256) | creation
    with rasterio.open(path, "w", **options) as dst:
        dst.write(data, 1)
        if overviews:
            dst.build_overviews(list(overviews), Resampling.average)


@pytest.fixture(scope="module")
def items(small_archive):
    return read_item_collection(small_archive["catalog"])


def test_search_filters_dates_cloud_and_bbox(small_archive, items):
    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]
    found = search_items(cfg["stac"], tile.bbox_lonlat(), "2021-03-02", "2021-03-31",
                         small_archive["catalog"])
    assert found and all("2021-03-02" <= it.datetime.date().isoformat() <= "2021-03-31" for it in found)
    assert [(it.datetime, it.id) for it in found] == sorted((it.datetime, it.id) for it in found)
    # whole days: an item at 10:20 on the end date is included
    last = found[-1].datetime.date().isoformat()
    again = search_items(cfg["stac"], tile.bbox_lonlat(), "2021-03-02", last, small_archive["catalog"])
    assert [i.id for i in again] == [i.id for i in found]

    strict = dict(cfg["stac"], max_cloud_cover=20)
    clear = search_items(strict, tile.bbox_lonlat(), "2021-01-01", "2023-06-30", small_archive["catalog"])
    expected = [it.id for it in items if it.properties["eo:cloud_cover"] < 20]
    assert sorted(i.id for i in clear) == sorted(expected)

    assert search_items(cfg["stac"], (100.0, 10.0, 100.1, 10.1), "2021-01-01", "2023-06-30",
                        small_archive["catalog"]) == []


def test_scale_offset_from_raster_bands_or_baseline(items):
    old = next(i for i in items if i.properties["s2:processing_baseline"] == "03.01")
    new = next(i for i in items if i.properties["s2:processing_baseline"] == "04.00")
    assert _scale_offset(old, "B04") == (1e-4, 0.0)
    assert _scale_offset(new, "B04") == (1e-4, -0.1)
    for item, offset in ((old, 0.0), (new, -0.1)):
        bare = copy.deepcopy(item)
        bare.assets["B04"].extra_fields.pop("raster:bands")
        assert _scale_offset(bare, "B04") == (1e-4, offset)


def test_scale_offset_from_stac_1_1_fields(items):
    """STAC 1.1 providers put scale/offset on the asset or in ``bands``; those win over
    the baseline rule (here deliberately different values, so a fallback would show)."""
    item = copy.deepcopy(next(i for i in items if i.properties["s2:processing_baseline"] == "04.00"))
    fields = item.assets["B04"].extra_fields
    fields.pop("raster:bands")
    fields.update({"raster:scale": 2e-4, "raster:offset": -0.2})
    assert _scale_offset(item, "B04") == (2e-4, -0.2)
    fields.pop("raster:scale"), fields.pop("raster:offset")
    fields["bands"] = [{"name": "B04", "raster:scale": 3e-4}]
    assert _scale_offset(item, "B04") == (3e-4, 0.0)


@pytest.mark.parametrize("baseline", ["03.01", "04.00"])
def test_reflectance_on_the_native_grid_is_dn_times_scale_plus_offset(small_archive, items, baseline):
    item = next(i for i in items if i.properties["s2:processing_baseline"] == baseline
                and 5 < i.properties["eo:cloud_cover"] < 60)
    scl_asset = item.assets["SCL"]
    h, w = scl_asset.extra_fields["proj:shape"]
    gbox = GeoBox((h, w), Affine(*scl_asset.extra_fields["proj:transform"]),
                  item.properties["proj:code"])
    stac_cfg = dict(small_archive["cfg"]["stac"], resampling={"reflectance": "nearest", "scl": "nearest"})
    cube = load_reflectance([item], gbox, ["nir", "swir22"], stac_cfg)
    assert cube.sizes["time"] == 1
    with rasterio.open(item.assets["B8A"].href) as src:
        dn = src.read(1)
    with rasterio.open(scl_asset.href) as src:
        scl = src.read(1)
    valid = np.isin(scl, stac_cfg["valid_scl_classes"]) & (dn != 0)
    offset = -0.1 if baseline == "04.00" else 0.0
    got = cube["nir"].values[0]
    np.testing.assert_allclose(got[valid], dn[valid] * 1e-4 + offset, rtol=1e-6, atol=1e-6)
    assert np.isnan(got[~valid]).all()
    assert (~valid).any() and valid.any()
    assert np.array_equal(cube["clear"].values[0], valid & (cube["swir22"].values[0] == cube["swir22"].values[0]))


def test_tile_cube_has_one_step_per_day(small_archive):
    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[1]
    found = search_items(cfg["stac"], tile.bbox_lonlat(), "2021-01-01", "2021-06-30",
                         small_archive["catalog"])
    cube = load_reflectance(found, tile.geobox, ["red", "nir"], cfg["stac"], threads=2)
    assert cube.sizes["time"] == len({it.datetime.date() for it in found}) < len(found)
    assert cube["red"].dtype == np.float32 and cube["red"].dims == ("time", "y", "x")
    np.testing.assert_array_equal(cube.x.values, tile.geobox.coords["x"].values)
    np.testing.assert_array_equal(cube.y.values, tile.geobox.coords["y"].values)
    assert sorted(__import__("json").loads(cube.attrs["item_ids"])) == sorted(i.id for i in found)
    # the tile straddles both granules: no all-NaN column strip where one granule ends
    ndvi = spectral_index(cube, "NDVI")
    assert np.isfinite(ndvi.values).any(axis=0).all()


def test_reads_in_flight_change_no_value(small_archive, monkeypatch):
    """More reads in flight than cores (stac.IO_THREADS) give the same cube as one at a
    time; a bad FORESTWATCH_IO_THREADS is refused with what to set."""
    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]
    found = search_items(cfg["stac"], tile.bbox_lonlat(), "2021-03-01", "2021-08-31",
                         small_archive["catalog"])
    cubes = []
    for n in ("1", "8", ""):  # "": the default, IO_THREADS
        monkeypatch.setenv("FORESTWATCH_IO_THREADS", n)
        cubes.append(load_reflectance(found, tile.geobox, ["red", "nir"], cfg["stac"],
                                      threads=1))
    for band in ("red", "nir", "clear"):
        for cube in cubes[1:]:
            np.testing.assert_array_equal(cubes[0][band].values, cube[band].values)
    assert np.isfinite(cubes[0]["red"].values).any()
    monkeypatch.setenv("FORESTWATCH_IO_THREADS", "many")
    with pytest.raises(ValueError, match="FORESTWATCH_IO_THREADS is 'many'"):
        load_reflectance(found, tile.geobox, ["red"], cfg["stac"])


def test_reader_warps_each_file_onto_the_tile_and_reads_overviews_when_coarser(tmp_path):
    """The reader (forestwatch._assets) equals GDAL's own reprojection of the whole file
    onto a tile grid in another CRS, and reads a 10 m file onto a 20 m grid from its 2x
    overview (a quarter of the pixels), not from full resolution."""
    import pystac
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from forestwatch._assets import _overview_level, read_slices

    rng = np.random.default_rng(0)
    data = rng.integers(1, 10_000, (400, 400), dtype=np.uint16)
    path = tmp_path / "b.tif"
    src_transform = Affine(10, 0, 500_000, 0, -10, 5_600_000)
    write_tiled(path, data, src_transform, overviews=(2, 4))
    with rasterio.open(path) as src:
        assert _overview_level(src, 10) is None
        assert _overview_level(src, 20) == 0
        assert _overview_level(src, 45) == 1
        overview = src.read(1, out_shape=(200, 200))  # GDAL serves this from the overview
    # a tile grid in another CRS, half outside the file
    from pyproj import Transformer

    x, y = Transformer.from_crs(32633, 3035, always_xy=True).transform(500_000, 5_598_000)  # the file's west edge
    tile = GeoBox((60, 60), Affine(20, 0, round(x) - 600, 0, -20, round(y) + 600), "EPSG:3035")
    item = pystac.Item("a", None, None, __import__("datetime").datetime(2024, 1, 1), {})
    item.add_asset("B", pystac.Asset(str(path)))
    out, failures = read_slices([[item]], asset_keys=["B"], geobox=tile,
                                resampling={"B": "nearest"}, gdal_opts={}, threads=2)
    expected = np.zeros((60, 60), np.uint16)
    reproject(overview, expected, src_transform=src_transform * Affine.scale(2),
              src_crs="EPSG:32633", dst_transform=tile.affine, dst_crs="EPSG:3035",
              resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    assert failures == []
    assert (out["B"][0] == 0).any() and (out["B"][0] != 0).any()  # half outside the file
    np.testing.assert_array_equal(out["B"][0], expected)
    # an unreadable file is reported with its href, or raised when asked to fail
    item.add_asset("C", pystac.Asset(str(tmp_path / "missing.tif")))
    out, failures = read_slices([[item]], asset_keys=["B", "C"], geobox=tile,
                                resampling={"B": "nearest", "C": "nearest"}, gdal_opts={},
                                threads=2)
    assert [f[0] for f in failures] == [str(tmp_path / "missing.tif")]
    assert not out["C"].any()


def test_gdals_own_calls_read_what_rasterio_reads_and_report_what_it_cannot(tmp_path,
                                                                           monkeypatch, capfd):
    """The reader's own GDAL calls (forestwatch._gdal: files opened, described and read
    without rasterio) give the layers rasterio's reads give, and the same file infos:
    bands of two dtypes, a 10 m file read from its overview onto a 20 m grid, nodata, two
    files per slice, bilinear and nearest. A file whose data cannot be decoded is a
    failure with GDAL's reason on either path; a file the direct path cannot open is too,
    and GDAL prints nothing."""
    import datetime
    import os

    import pystac

    from forestwatch import _assets, _gdal

    assert _gdal.library() is not None, "rasterio's GDAL not found: the direct path is off"
    monkeypatch.setattr(_assets, "DECODED", _assets._DecodedBlocks(0))  # infos kept, no block
    rng = np.random.default_rng(5)
    items = []
    for n in range(3):
        item = pystac.Item(f"i{n}", None, None, datetime.datetime(2024, 1, 1 + n), {})
        for key, dtype, res in (("B", "uint16", 10), ("S", "uint8", 20)):
            size = 6000 // res
            data = rng.integers(1, 250 if dtype == "uint8" else 10_000, (size, size)).astype(dtype)
            data[:, : size // 5] = 0  # nodata
            path = tmp_path / f"{n}_{key}.tif"
            write_tiled(path, data, Affine(res, 0, 500_000 + 700 * n, 0, -res, 5_600_000),
                        overviews=(2,) if res == 10 else (), compress="deflate")
            item.add_asset(key, pystac.Asset(str(path)))
        items.append(item)
    slices = [[items[0], items[1]], [items[2]]]
    tile = GeoBox((200, 200), Affine(20, 0, 500_950, 0, -20, 5_599_050), "EPSG:32633")
    direct = []
    raster_init = _gdal.Raster.__init__

    def counted(self, *args, **kwargs):
        direct.append(args[0])
        raster_init(self, *args, **kwargs)

    monkeypatch.setattr(_gdal.Raster, "__init__", counted)

    def load():
        return _assets.read_slices(slices, asset_keys=["B", "S"], geobox=tile,
                                   resampling={"B": "bilinear", "S": "nearest"},
                                   gdal_opts={}, threads=2)

    first, failures = load()  # infos and data through GDAL's own calls
    assert failures == [] and len(direct) == 9  # the 10 m files at two levels
    second, failures = load()  # infos known, data read again: one open per file
    assert failures == [] and len(direct) == 15
    monkeypatch.setattr(_gdal, "library", lambda: None)  # FORESTWATCH_DIRECT_GDAL=0
    third, failures = load()  # data through rasterio
    assert failures == [] and len(direct) == 15
    monkeypatch.setattr(_assets, "DECODED", _assets._DecodedBlocks(0))
    fourth, failures = load()  # infos and data through rasterio
    assert failures == [] and len(direct) == 15
    for key in ("B", "S"):
        for other in (second, third, fourth):
            np.testing.assert_array_equal(other[key], first[key])
        assert (first[key] == 0).any() and (first[key] != 0).all(axis=0).any()
    monkeypatch.undo()
    # what the reader knows of a file is the same from either
    for item in items:
        for asset in item.assets.values():
            for level in (None, 0):
                opts = {} if level is None else {"OVERVIEW_LEVEL": level}
                try:
                    src = rasterio.open(asset.href, **opts)
                except rasterio.errors.RasterioIOError:
                    continue  # the 20 m file has no overview
                raster = _gdal.Raster(asset.href, level)
                with src:
                    assert _assets._FileInfo.of_gdal(raster.info()) == _assets._FileInfo.of(src)
                raster.close()
    monkeypatch.undo()
    monkeypatch.setattr(_assets, "DECODED", _assets._DecodedBlocks(0))
    monkeypatch.setattr(_gdal.Raster, "__init__", counted)
    load()  # the infos again, in this cache
    # damage the first file's first overview block in place, keeping its size and time
    # (the cache's key): its info is known, so only its data read fails
    path = items[0].assets["B"].href
    stat = os.stat(path)
    with rasterio.open(path, OVERVIEW_LEVEL=0) as src:  # what the 20 m tile reads
        offset = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(64 * 1024))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    before = len(direct)
    out, failures = load()
    assert len(direct) > before
    assert [href for href, _ in failures] == [path]
    assert "failed" in failures[0][1]  # GDAL's reason (e.g. "IReadBlock failed at ...")
    monkeypatch.setattr(_gdal, "library", lambda: None)
    _, failures = load()
    assert [href for href, _ in failures] == [path]
    # a file gone since its info was read: the direct open fails, and says why
    monkeypatch.undo()
    monkeypatch.setattr(_assets, "DECODED", _assets._DecodedBlocks(0))
    # a file without a CRS cannot be placed on the tile: a failure that says so
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=64, height=64, count=1,
                       dtype="uint16") as dst:
        dst.write(np.ones((64, 64), np.uint16), 1)
    slices[1][0].assets["S"] = pystac.Asset(str(nocrs))
    _, failures = load()
    assert [(href, "coordinate reference system" in reason) for href, reason in failures
            if href == str(nocrs)] == [(str(nocrs), True)]
    # and not on stderr, where GDAL's own handler would print it past the logging filter
    # that redacts signed URLs
    capfd.readouterr()
    _gdal.use_options({})
    with pytest.raises(_gdal.GdalError, match="missing.tif"):
        _gdal.Raster(str(tmp_path / "missing.tif"), None)
    assert "missing.tif" not in capfd.readouterr().err


def test_gdal_options_of_a_reader_thread_are_the_loads(monkeypatch):
    """The reader's own GDAL calls see the load's options in their thread (what
    rasterio.Env sets for rasterio's): set by use_options, kept through a rasterio.Env of
    the same thread (the warper's reads), replaced by the next load's, an option the next
    load does not set unset; and not seen by another thread."""
    from concurrent.futures import ThreadPoolExecutor

    from forestwatch import _gdal

    lib = _gdal.library()
    get = lib.CPLGetConfigOption

    def in_a_reader_thread():
        seen = []
        _gdal.use_options({"GDAL_HTTP_HEADERS": "Authorization: a", "GDAL_HTTP_TIMEOUT": 7})
        seen.append((get(b"GDAL_HTTP_HEADERS", None), get(b"GDAL_HTTP_TIMEOUT", None)))
        with rasterio.Env(GDAL_HTTP_HEADERS="Authorization: a", GDAL_HTTP_TIMEOUT="7"):
            pass
        _gdal.use_options({"GDAL_HTTP_HEADERS": "Authorization: a", "GDAL_HTTP_TIMEOUT": 7})
        seen.append((get(b"GDAL_HTTP_HEADERS", None), get(b"GDAL_HTTP_TIMEOUT", None)))
        _gdal.use_options({"GDAL_HTTP_TIMEOUT": "9"})
        seen.append((get(b"GDAL_HTTP_HEADERS", None), get(b"GDAL_HTTP_TIMEOUT", None)))
        return seen

    with ThreadPoolExecutor(1) as pool:
        seen = pool.submit(in_a_reader_thread).result()
    assert seen == [(b"Authorization: a", b"7"), (b"Authorization: a", b"7"), (None, b"9")]
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(get, b"GDAL_HTTP_TIMEOUT", None).result() is None


@pytest.mark.parametrize("resampling", ["cubic", "average"])
def test_resamplings_through_gdals_warper_after_gdals_own_open(tmp_path, monkeypatch,
                                                               resampling):
    """A resampling the reader's own sampler does not make (cubic, average) goes through
    GDAL's warper (rasterio) after the file was opened and described by the reader's own
    GDAL calls in the same thread: the same layer as with rasterio alone, and GDAL's
    reprojection of the file onto a tile in another CRS (a smooth field, so that the
    warper's approximate transformer moves no value by more than a few DN), nodata kept
    as 0."""
    import datetime

    import pystac
    from pyproj import Transformer
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from forestwatch import _assets, _gdal

    rows, cols = np.mgrid[0:300, 0:300]
    data = (1000 + 10 * rows + 7 * cols).astype(np.uint16)
    data[:40] = 0
    path = tmp_path / "w.tif"
    transform = Affine(20, 0, 500_000, 0, -20, 5_600_000)
    write_tiled(path, data, transform)
    # a tile over the nodata rows
    x, y = Transformer.from_crs(32633, 3035, always_xy=True).transform(503_000, 5_599_000)
    tile = GeoBox((80, 80), Affine(20, 0, round(x) - 800, 0, -20, round(y) + 800), "EPSG:3035")
    item = pystac.Item("w", None, None, datetime.datetime(2024, 1, 1), {})
    item.add_asset("B", pystac.Asset(str(path)))

    def load():
        monkeypatch.setattr(_assets, "DECODED", _assets._DecodedBlocks(0))
        out, failures = _assets.read_slices([[item]], asset_keys=["B"], geobox=tile,
                                            resampling={"B": resampling}, gdal_opts={},
                                            threads=2)
        assert failures == []
        return out["B"][0]

    layer = load()
    monkeypatch.setattr(_gdal, "library", lambda: None)  # FORESTWATCH_DIRECT_GDAL=0
    np.testing.assert_array_equal(load(), layer)
    expected = np.zeros((80, 80), np.uint16)
    reproject(data, expected, src_transform=transform, src_crs="EPSG:32633",
              dst_transform=tile.affine, dst_crs="EPSG:3035",
              resampling=Resampling[resampling], src_nodata=0, dst_nodata=0)
    both = (layer != 0) & (expected != 0)
    assert (layer == 0).mean() > 0.1 and both.mean() > 0.5
    assert np.abs(layer[both].astype(int) - expected[both]).max() <= 5


def test_pixel_positions_interpolated_between_exact_nodes_match_exact_transforms(monkeypatch):
    """The reader's pixel mapping (exact transforms at nodes fixed to the CRS, bilinear in
    between) is within a thousandth of a source pixel of transforming every pixel, across
    UTM zones and from a geographic tile grid; a block of the tile maps exactly as the same
    pixels of the whole tile; past the error limit every pixel is transformed exactly."""
    from pyproj import CRS, Transformer

    from forestwatch import _assets

    def exact(geobox, crs, transform):
        rows, cols = np.meshgrid(np.arange(geobox.shape[0]) + 0.5,
                                 np.arange(geobox.shape[1]) + 0.5, indexing="ij")
        x, y = geobox.affine * (cols.ravel(), rows.ravel())
        sx, sy = Transformer.from_crs(geobox.crs.to_wkt(), crs.to_wkt(),
                                      always_xy=True).transform(x, y)
        return ~transform * (np.asarray(sx), np.asarray(sy))

    laea = GeoBox((400, 300), Affine(20, 0, 4_480_000, 0, -20, 3_060_000), "EPSG:3035")
    cases = [
        (laea, CRS.from_epsg(32633), Affine(20, 0, 399_960, 0, -20, 5_700_000)),
        (laea, CRS.from_epsg(32632), Affine(10, 0, 699_960, 0, -10, 5_700_000)),
        (GeoBox((300, 500), Affine(0.0002, 0, 14.0, 0, -0.0002, 66.0), "EPSG:4326"),
         CRS.from_epsg(32633), Affine(10, 0, 399_960, 0, -10, 7_400_000)),
    ]
    for geobox, crs, transform in cases:
        col, row = _assets._positions(geobox, crs, transform)
        ecol, erow = exact(geobox, crs, transform)
        assert np.abs(col - ecol).max() < 1e-3 and np.abs(row - erow).max() < 1e-3
        assert np.abs(col - ecol).max() > 0  # interpolated, not transformed pixel by pixel
        block = geobox[37:201, 45:290]
        bcol, brow = _assets._positions(block, crs, transform)
        whole = col.reshape(geobox.shape)[37:201, 45:290].ravel()
        np.testing.assert_allclose(bcol, whole, rtol=0, atol=1e-8)
    monkeypatch.setattr(_assets, "MAX_INTERPOLATION_ERROR", 0.0)
    col, row = _assets._positions(*cases[0])
    ecol, erow = exact(*cases[0])
    np.testing.assert_array_equal(col, ecol)


def test_the_compiled_position_steps_give_numpys_bits():
    """The reader's compiled steps (forestwatch._sampling.interpolate_rows and
    inside_positions) give the bits of the numpy expressions they replaced: the
    interpolation between node rows, and the positions inside a source grid with their
    flat tile indices (none given when all are inside)."""
    from forestwatch._assets import _footprint, _interpolate

    rng = np.random.default_rng(5)
    nx, ny = np.arange(12) * 320.0, np.arange(9) * 320.0
    nodes = rng.normal(500, 200, (9, 12))
    xs, ys = rng.uniform(0, 3500, 150), rng.uniform(0, 2500, 90)
    fx = (xs - nx[0]) / (nx[1] - nx[0])
    ix = np.clip(np.floor(fx).astype(np.int64), 0, len(nx) - 2)
    tx = fx - ix
    along_x = nodes[:, ix] * (1 - tx) + nodes[:, ix + 1] * tx
    fy = (ys - ny[0]) / (ny[1] - ny[0])
    iy = np.clip(np.floor(fy).astype(np.int64), 0, len(ny) - 2)
    ty = (fy - iy)[:, None]
    expected = along_x[iy] + (along_x[iy + 1] - along_x[iy]) * ty
    got = _interpolate(nodes, nx, ny, xs, ys)
    np.testing.assert_array_equal(got.view(np.uint64), expected.view(np.uint64))

    col, row = rng.uniform(-30, 130, 5000), rng.uniform(-30, 90, 5000)
    col[7], row[9] = np.nan, np.inf  # not inside
    inside = (col >= 0) & (col < 100) & (row >= 0) & (row < 60)
    foot = _footprint((col, row), (60, 100))
    np.testing.assert_array_equal(foot.targets, np.flatnonzero(inside))
    np.testing.assert_array_equal(foot.col, col[inside])
    np.testing.assert_array_equal(foot.row, row[inside])
    assert 0 < inside.sum() < inside.size
    whole = _footprint((col[inside], row[inside]), (60, 100))
    assert whole.targets.size == 0 and np.array_equal(whole.col, col[inside])
    assert _footprint((col[~inside][:5] * 0 - 1, row[~inside][:5]), (60, 100)) is None


def _bilinear_reference(col, row, data, nodata):
    """GDAL's bilinear conventions in plain numpy, pixel by pixel (float32, the operations
    in the reader's order): the four source pixel centres around each point, those outside
    the file or equal to ``nodata`` left out and the weights renormalised over the others,
    rounded half up; 0 where they weigh less than 1e-5."""
    c, r = col - 0.5, row - 0.5
    c0, r0 = np.floor(c), np.floor(r)
    fc, fr = (c - c0).astype(np.float32), (r - r0).astype(np.float32)
    c0, r0 = c0.astype(int), r0.astype(int)
    one = np.float32(1)
    out = np.zeros(len(col), dtype=np.uint16)
    for p in range(len(col)):
        total = weight = np.float32(0)
        for dr, dc, w in ((0, 0, (one - fc[p]) * (one - fr[p])), (0, 1, fc[p] * (one - fr[p])),
                          (1, 0, (one - fc[p]) * fr[p]), (1, 1, fc[p] * fr[p])):
            rr, cc = r0[p] + dr, c0[p] + dc
            if 0 <= rr < data.shape[0] and 0 <= cc < data.shape[1] and data[rr, cc] != nodata:
                total += w * np.float32(data[rr, cc])
                weight += w
        if weight >= np.float32(1e-5):
            out[p] = np.clip(np.floor(total / weight + np.float32(0.5)), 0, 65535)
    return out


def test_bilinear_sampling_gives_the_reference_bits():
    """The reader's one-pass bilinear kernel (forestwatch._sampling, through
    _Sampler.fill) gives the bits of GDAL's conventions computed pixel by pixel in
    numpy: for tiles inside the file and across its edges, rotated and shifted, with and
    without nodata in the window, and 0 outside the file; filling a layer an earlier item
    partly observed, it keeps that item's values and fills only the rest."""
    from forestwatch._assets import _footprint, _Sampler

    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0:45, 0:55] + 0.5
    within = []
    for case in range(6):
        angle, shift = 0.03 * case, (-7.0 if case % 2 else 9.0)
        col = (shift + cols * np.cos(angle) - rows * np.sin(angle) + rng.random()).ravel()
        row = (shift + cols * np.sin(angle) + rows * np.cos(angle) + rng.random()).ravel()
        file_shape = (60, 65)
        sampler = _Sampler(_footprint((col, row), file_shape), "bilinear")
        (r0, r1), (c0, c1) = sampler.window
        whole = rng.integers(1, 10_000, file_shape, dtype=np.uint16)
        holed = whole.copy()
        holed[5:20, 7:30] = 0
        inside = (col >= 0) & (col < file_shape[1]) & (row >= 0) & (row < file_shape[0])
        for data in (whole, holed):
            layer = np.zeros((45, 55), dtype=np.uint16)
            sampler.fill(layer, data[r0:r1, c0:c1], 0)
            got = layer.ravel()
            expected = np.where(inside, _bilinear_reference(col, row, data, 0), 0)
            assert np.array_equal(got, expected), case
            assert (got[inside] > 0).all() if data is whole else (got[inside] == 0).any()
        earlier = np.zeros((45, 55), dtype=np.uint16)
        earlier[:20] = 7  # an earlier item of the slice observed the first 20 rows
        sampler.fill(earlier, whole[r0:r1, c0:c1], 0)
        expected = np.where(inside, _bilinear_reference(col, row, whole, 0), 0).reshape(45, 55)
        assert (earlier[:20] == 7).all() and np.array_equal(earlier[20:], expected[20:])
        within.append(bool(inside.all()))
    assert True in within and False in within  # tiles inside the file and across its edges


def test_proj_transformers_made_once_per_crs_pair_and_process(monkeypatch):
    """The reader's transformations run in one thread kept for the process
    (forestwatch._proj.PROJ): a pyproj Transformer (~0.2 s to make, and made again by
    pyproj in every thread that uses it) is made once per CRS pair, whatever thread asks,
    with the values of a transformer made on the spot; a forked process makes its own."""
    import multiprocessing
    import threading

    from pyproj import Transformer
    from rasterio.crs import CRS

    from forestwatch import _proj

    made = []
    real = Transformer.from_crs

    def counting(*args, **kwargs):  # a spy: the real transformer, counted
        made.append(args[:2])
        return real(*args, **kwargs)

    monkeypatch.setattr(Transformer, "from_crs", staticmethod(counting))
    proj = _proj.ProjThread()
    laea, utm = CRS.from_epsg(3035).to_wkt(), CRS.from_epsg(32633).to_wkt()
    x, y = np.array([4_480_000.0, 4_490_000.0]), np.array([3_050_000.0, 3_060_000.0])
    expected = real(laea, utm, always_xy=True).transform(x, y)
    made.clear()
    results = []
    threads = [threading.Thread(target=lambda: results.append(proj.transform(laea, utm, x, y)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for got in results:
        np.testing.assert_array_equal(got, expected)
    assert made == [(laea, utm)]
    proj.transform(utm, laea, *expected)
    assert made == [(laea, utm), (utm, laea)]

    ctx = multiprocessing.get_context("fork")  # the parent's thread is not in the child
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(proj.transform(laea, utm, x, y)))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    np.testing.assert_array_equal(got, expected)


def test_spectral_indices_and_no_infinities():
    ds = xr.Dataset({b: (("time", "y", "x"), np.full((1, 1, 3), v, np.float32)) for b, v in
                     {"red": 0.05, "nir": 0.35, "swir16": 0.15, "swir22": 0.07}.items()})
    assert float(spectral_index(ds, "NDVI")[0, 0, 0]) == pytest.approx(0.3 / 0.4)
    assert float(spectral_index(ds, "NBR")[0, 0, 0]) == pytest.approx(0.28 / 0.42)
    assert float(spectral_index(ds, "NDMI")[0, 0, 0]) == pytest.approx(0.2 / 0.5)
    ds["nir"][0, 0, 0] = 0.0
    ds["red"][0, 0, 0] = 0.0
    ndvi = spectral_index(ds, "NDVI")
    assert np.isnan(ndvi[0, 0, 0]) and not np.isinf(ndvi.values).any()


def test_band_presets_and_overrides():
    assert band_keys({"preset": "earth-search", "bands": {}})["nir"] == "nir08"
    assert band_keys({"preset": "pgstac-cdse", "bands": {}})["red"] == "B04_20"
    assert band_keys({"preset": "cdse", "bands": {}})["scl"] == "SCL_20m"
    assert band_keys({"preset": "synthetic", "bands": {"red": "B04_20"}})["red"] == "B04_20"
    with pytest.raises(ValueError, match="no asset key configured"):
        load_reflectance([], GeoBox((2, 2), Affine(20, 0, 0, 0, -20, 0), "EPSG:3035"),
                         ["blue"], {"preset": "synthetic", "bands": {}})


@pytest.mark.parametrize("tiled", [True, False])
def test_windows_assembled_from_kept_blocks_equal_gdals_read(tmp_path, tiled):
    """The reader's decoded blocks (forestwatch._assets.DECODED): any window, assembled
    from blocks kept or read (a tiled file's 256 px blocks; a striped file's 512 px
    virtual blocks), equals GDAL's read of that window; a second read of the same file
    opens nothing; a file replaced at the same path is read anew."""
    from forestwatch._assets import DECODED, _file_key, _FileInfo, _read_window

    rng = np.random.default_rng(1)
    path = tmp_path / "c.tif"

    def write(data):
        opts = dict(tiled=True, blockxsize=256, blockysize=256) if tiled else {}
        tmp = tmp_path / "new.tif"
        with rasterio.open(tmp, "w", driver="GTiff", width=700, height=600, count=1,
                           dtype="uint16", crs="EPSG:32633", nodata=0,
                           transform=Affine(20, 0, 500_000, 0, -20, 5_600_000), **opts) as dst:
            dst.write(data, 1)
        tmp.rename(path)

    data = rng.integers(1, 10_000, (600, 700), dtype=np.uint16)
    write(data)
    # small windows first, so that later ones find some of their blocks kept and read
    # the others
    windows = [((255, 257), (511, 513)), ((10, 11), (699, 700))]
    windows += [tuple(tuple(sorted(rng.choice(n + 1, 2, replace=False))) for n in (600, 700))
                for _ in range(20)]
    windows += [((0, 600), (0, 700))]
    key = _file_key(str(path)) + (None,)
    DECODED.clear()

    class Counted:
        """The open file, counting its reads."""

        def __init__(self, src):
            self.src, self.reads = src, 0

        def read(self, *args, **kwargs):
            self.reads += 1
            return self.src.read(*args, **kwargs)

    with rasterio.open(path) as src:
        info = _FileInfo.of(src)
        assert info.block_shape == ((256, 256) if tiled else (512, 512))
        for window in windows:
            counted = Counted(src)
            assert np.array_equal(_read_window(key, info, window, lambda c=counted: c),
                                  src.read(1, window=window)), window
            # the blocks not kept, however many, in one read (GDAL fetches them together)
            assert counted.reads <= 1, window

    def must_not_open():
        raise AssertionError("a kept block was read again")

    assert np.array_equal(_read_window(key, info, ((0, 600), (0, 700)), must_not_open), data)
    write(data + 1)  # replaced in place: another inode, another key
    new_key = _file_key(str(path)) + (None,)
    assert new_key != key
    with rasterio.open(path) as src:
        assert np.array_equal(_read_window(new_key, info, ((0, 600), (0, 700)), lambda: src),
                              data + 1)
    DECODED.clear()
    assert DECODED.block(key + (0, 0)) is None


def test_successive_loads_scan_in_alternate_directions_to_find_kept_blocks(tmp_path,
                                                                            monkeypatch):
    """Two loads in a row give the same layers and failures (the first item of a slice
    with data wins in either direction), and the second, scanning the other way, finds
    the blocks the first decoded last: with a cache of 8 of the 14 blocks, 8 are found
    (scanning the same way again, LRU would have evicted each before its turn: none)."""
    import datetime
    import itertools

    import pystac

    from forestwatch import _assets

    class Counting(_assets._DecodedBlocks):
        found = 0

        def block(self, key):
            block = super().block(key)
            Counting.found += block is not None
            return block

    monkeypatch.setattr(_assets, "DECODED", Counting(1))  # 1 MiB: 8 blocks of 128 KiB
    monkeypatch.setattr(_assets, "_SCANS", itertools.count())  # this test's first load: forward
    transform = Affine(20, 0, 500_000, 0, -20, 5_600_000)
    rng = np.random.default_rng(3)
    slices, expected = [], []
    for n in range(8):  # 8 slices of 2 overlapping files: 16 blocks of 256 x 256 uint16
        pair = []
        for part, cols in enumerate((slice(0, 170), slice(86, 256))):
            data = np.zeros((256, 256), np.uint16)
            data[:, cols] = rng.integers(1, 10_000, (256, cols.stop - cols.start))
            path = tmp_path / f"{n}_{part}.tif"
            write_tiled(path, data, transform)
            item = pystac.Item(f"{n}_{part}", None, None, datetime.datetime(2024, 1, 1 + n), {})
            item.add_asset("B", pystac.Asset(str(path)))
            pair.append((item, data))
        slices.append([item for item, _ in pair])
        expected.append([data for _, data in pair])
    # unreadable files are skipped and recorded: a second file, then a first one
    slices[3][1].assets["B"] = pystac.Asset(str(tmp_path / "missing.tif"))
    expected[3][1] = np.zeros((256, 256), np.uint16)
    slices[6][0].assets["B"] = pystac.Asset(str(tmp_path / "gone.tif"))
    expected[6][0] = np.zeros((256, 256), np.uint16)
    expected = [np.where(a != 0, a, b) for a, b in expected]  # the slice's first item wins
    tile = GeoBox((256, 256), transform, "EPSG:32633")
    loads = []
    for _ in range(2):
        Counting.found = 0
        out, failures = _assets.read_slices(slices, asset_keys=["B"], geobox=tile,
                                            resampling={"B": "nearest"}, gdal_opts={},
                                            threads=1)
        loads.append((out["B"], failures, Counting.found))
    for layers, failures, _ in loads:
        np.testing.assert_array_equal(layers, np.stack(expected))
        assert [href for href, _ in failures] == [str(tmp_path / "missing.tif"),
                                                  str(tmp_path / "gone.tif")]
    assert loads[0][2] == 0  # nothing kept before
    assert loads[1][2] == 8  # of the 14 blocks it decoded, the 8 the cache holds: its last


def test_decoded_blocks_are_bounded_and_sized_from_the_environment(monkeypatch):
    """Least recently used blocks go first beyond the size; FORESTWATCH_DECODED_CACHE_MIB
    sets it (0 keeps none) and a bad value is refused with what to set."""
    from forestwatch._assets import _decoded_cache_mib, _DecodedBlocks

    cache = _DecodedBlocks(1)
    block = np.ones((256, 800), dtype=np.uint16)  # 400 KiB
    cache.put_block(("a",), block.copy())
    cache.put_block(("b",), block.copy())
    assert cache.block(("a",)) is not None  # now the most recently used
    cache.put_block(("c",), block.copy())
    assert cache.block(("b",)) is None and cache.block(("a",)) is not None
    monkeypatch.setenv("FORESTWATCH_DECODED_CACHE_MIB", "0")
    none_kept = _DecodedBlocks(_decoded_cache_mib())
    none_kept.put_block(("a",), block.copy())
    assert none_kept.block(("a",)) is None
    monkeypatch.setenv("FORESTWATCH_DECODED_CACHE_MIB", "many")
    with pytest.raises(ValueError, match="FORESTWATCH_DECODED_CACHE_MIB is 'many'"):
        _decoded_cache_mib()


_PARSE_SIDE_BY_SIDE = """
import importlib.metadata, json, threading, time
import pystac

# each extension's module found slowly, as in a process busy importing (a tile's
# searches run beside the monitor's imports): pystac finds the hooks at its first parse
found = importlib.metadata.entry_points


class Slow:
    def __init__(self, entry_point):
        self.entry_point = entry_point

    def load(self):
        time.sleep(0.01)
        return self.entry_point.load()


importlib.metadata.entry_points = lambda **kw: [Slow(ep) for ep in found(**kw)]
from forestwatch.stac import pystac_ready

barrier, seen = threading.Barrier(4), []


def parse():
    barrier.wait()
    pystac_ready()
    seen.append(len(pystac.EXTENSION_HOOKS.hooks))


threads = [threading.Thread(target=parse) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"seen": seen, "installed": len(found(group="pystac.extensions"))}))
"""


def test_items_parsed_side_by_side_see_every_extension_hook():
    """pystac registers its extensions' hooks at its first parse and marks them found
    before it has added them all: a thread parsing meanwhile saw none (its items not
    migrated) or a registry changing under it ("dictionary changed size during
    iteration", met by tile_state's two searches in a new process). After
    forestwatch.stac.pystac_ready, in every one of 4 threads started at once in a new
    process, every installed hook is registered."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PARSE_SIDE_BY_SIDE], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["installed"] > 0
    assert result["seen"] == [result["installed"]] * 4


def test_the_cube_from_the_reader_layers_is_numpy_s_bit_for_bit():
    """stac._reflectance (one compiled pass per slice, the days on 2 threads) gives the
    bits of the numpy assembly it replaced: per day, the first slice that observed a pixel
    clear (valid SCL class, no band at 0) wins, scaled by its own rule; NaN elsewhere."""
    from forestwatch.stac import _reflectance

    rng = np.random.default_rng(7)
    shape = (37, 53)
    days = ["2023-05-01", "2023-05-03", "2023-05-06"]
    rules = [((1e-4, -0.1), (1e-4, -0.1)), ((1e-4, 0.0), (2e-4, 0.0)), ((1e-4, -0.1), (1e-4, -0.1))]
    slice_keys = [(days[0], rules[0]), (days[0], rules[1]), (days[1], rules[2]), (days[2], rules[1]),
                  (days[2], rules[0])]
    keys = {"nir08": "B8A", "swir22": "B12", "scl": "SCL"}
    raw = {k: rng.integers(1, 10000, (len(slice_keys),) + shape).astype(np.uint16)
           for k in ("B8A", "B12")}
    for k in raw:
        raw[k][rng.random(raw[k].shape) < 0.2] = 0  # no data
    raw["SCL"] = rng.integers(0, 12, (len(slice_keys),) + shape).astype(np.uint16)
    valid = np.asarray([4, 5, 6, 7, 11], dtype=np.uint8)
    bands = ["nir08", "swir22"]

    out, clear = _reflectance(raw, slice_keys, days, bands, keys, valid, 2)

    want = {b: np.full((len(days),) + shape, np.nan, dtype=np.float32) for b in bands}
    want_clear = np.zeros((len(days),) + shape, dtype=bool)
    for n, (d, rule) in enumerate(slice_keys):
        i = days.index(d)
        ok = np.isin(raw["SCL"][n], valid) & ~want_clear[i]
        for b in bands:
            ok &= raw[keys[b]][n] != 0
        for b, (scale, offset) in zip(bands, rule, strict=True):
            want[b][i][ok] = (raw[keys[b]][n][ok].astype(np.float32) * np.float32(scale)
                              + np.float32(offset))
        want_clear[i] |= ok
    assert want_clear.any() and not want_clear.all()
    assert np.array_equal(clear, want_clear)
    for b in bands:
        assert out[b].dtype == np.float32
        assert np.array_equal(out[b].view(np.uint32), want[b].view(np.uint32))  # the bits


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spectral_index_has_the_bits_of_xarray_s_expression(dtype):
    """spectral_index (one compiled pass, 2 threads) gives the bits of the xarray
    expression it replaced, NaN where the sum is 0 or a band is missing, with the cube's
    coordinates."""
    rng = np.random.default_rng(11)
    shape = (9, 130, 140)
    nir = rng.uniform(-0.1, 0.6, shape).astype(dtype)
    swir = rng.uniform(-0.1, 0.6, shape).astype(dtype)
    nir[0, :5] = np.nan
    swir[1, :7] = -nir[1, :7]  # a zero sum
    coords = {"time": np.arange(shape[0]), "y": np.arange(shape[1]) * 20.0,
              "x": np.arange(shape[2]) * 20.0}
    ds = xr.Dataset({"nir": (("time", "y", "x"), nir), "swir22": (("time", "y", "x"), swir)},
                    coords=coords)
    got = spectral_index(ds, "NBR")
    with np.errstate(divide="ignore", invalid="ignore"):
        want = (ds["nir"] - ds["swir22"]) / (ds["nir"] + ds["swir22"])
    want = want.where(np.isfinite(want)).astype(np.float32)
    assert got.dtype == np.float32 and got.name == "NBR" and got.dims == want.dims
    assert np.isnan(got.values[0, :5]).all() and np.isnan(got.values[1, :7]).all()
    assert np.array_equal(got.values.view(np.uint32), want.values.view(np.uint32))
    xr.testing.assert_identical(got.drop_vars(list(got.coords)).rename(None),
                                want.drop_vars(list(want.coords)).rename(None))
    assert all(np.array_equal(got[c].values, want[c].values) for c in coords)
