"""Per-tile report rasters and mosaic VRTs (forestwatch.reports).

nrt's own ``report()`` stamps EPSG:3035, writes no nodata and, with the uint8 of the
reference deploy page, wraps detection dates modulo 256.
These tests read the files back with rasterio and check what a user of the rasters sees.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from forestwatch.reports import build_vrt, write_tile_reports

NY, NX = 12, 15
RES = 20.0
UTM = "EPSG:32633"
UTM_TRANSFORM = Affine(RES, 0, 500_000.0, 0, -RES, 5_200_000.0)


def _mask_and_dates() -> tuple[np.ndarray, np.ndarray]:
    """Mask codes 0..4 cycling over the pixels; a detection date on every pixel (also
    where mask != 3, which must not be written)."""
    mask = (np.arange(NY * NX).reshape(NY, NX) % 5).astype(np.uint8)
    dates = np.full((NY, NX), 18000, dtype=np.int64)
    # mask 3 pixels: (0, 3), (0, 8), (0, 13), (1, 3), ...
    assert mask[0, 3] == mask[0, 8] == mask[0, 13] == 3
    dates[0, 3] = 19661  # 2023-10-31: 19661 % 256 = 205, would wrap in uint8
    dates[0, 8] = 20000
    dates[0, 13] = 70000  # year 2161: > 65535, would wrap in uint16
    return mask, dates


def _read(path: Path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile


def test_tile_reports_values_georeferencing_and_metadata(tmp_path):
    mask, dates = _mask_and_dates()
    mpath, dpath = tmp_path / "t" / "mask.tif", tmp_path / "t" / "detection_date.tif"
    write_tile_reports(mask, dates, UTM, UTM_TRANSFORM, mpath, dpath)

    with rasterio.open(dpath) as src:
        assert src.count == 1
        assert src.dtypes[0] == "int32"
        got = src.read(1)
        assert got.dtype == np.int32
        assert got[0, 3] == 19661 and got[0, 8] == 20000 and got[0, 13] == 70000
        expected = np.where(mask == 3, dates, 0)
        np.testing.assert_array_equal(got, expected)
        assert (got[mask != 3] == 0).all()
        assert src.nodata == 0
        assert src.crs == CRS.from_epsg(32633)
        assert src.crs != CRS.from_epsg(3035)
        assert src.transform == UTM_TRANSFORM
        assert (src.height, src.width) == (NY, NX)
        assert src.descriptions == ("detection_date",)
        assert src.tags(1)["units"] == "days since 1970-01-01"
        assert src.profile.get("tiled") is True or "blockxsize" in src.profile
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.compression is not None

    with rasterio.open(mpath) as src:
        assert src.dtypes[0] == "uint8"
        np.testing.assert_array_equal(src.read(1), mask)
        assert src.nodata == 255
        assert src.crs == CRS.from_epsg(32633)
        assert src.transform == UTM_TRANSFORM
        assert src.descriptions == ("mask",)
        cmap = src.colormap(1)
        assert cmap[3] == (215, 25, 28, 255)
        assert cmap[1] == (26, 150, 65, 255)
        tags = src.tags(1)
        assert tags["class_3"] == "confirmed break"
        assert tags["class_0"] == "not monitored (not forest)"
        assert src.profile.get("tiled") is True or "blockxsize" in src.profile
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["detection_date.tif",
                                                                 "mask.tif"]


def test_tile_reports_accept_nrt_uint16_dates_and_overwrite(tmp_path):
    """nrt hands out detection_date as uint16; rewriting a tile's reports replaces them."""
    mask, dates = _mask_and_dates()
    mpath, dpath = tmp_path / "mask.tif", tmp_path / "date.tif"
    write_tile_reports(mask, dates, UTM, UTM_TRANSFORM, mpath, dpath)
    mask2 = np.full((NY, NX), 3, dtype=np.uint8)
    dates2 = np.full((NY, NX), 65535, dtype=np.uint16)
    write_tile_reports(mask2, dates2, UTM, UTM_TRANSFORM, mpath, dpath)
    assert (_read(dpath)[0] == 65535).all()
    assert (_read(mpath)[0] == 3).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["date.tif", "mask.tif"]


def test_no_detection_date_writes_zeros(tmp_path):
    mask, _ = _mask_and_dates()
    dpath = tmp_path / "date.tif"
    write_tile_reports(mask, None, UTM, UTM_TRANSFORM, tmp_path / "mask.tif", dpath)
    got, profile = _read(dpath)
    assert profile["dtype"] == "int32"
    assert got.shape == (NY, NX)
    assert (got == 0).all()


@pytest.mark.parametrize("bad", [-1, 2**31])
def test_dates_out_of_int32_range_are_refused(tmp_path, bad):
    mask, dates = _mask_and_dates()
    dates[5, 5] = bad
    with pytest.raises(ValueError):
        write_tile_reports(mask, dates, UTM, UTM_TRANSFORM, tmp_path / "m.tif",
                           tmp_path / "d.tif")
    assert not (tmp_path / "m.tif").exists() and not (tmp_path / "d.tif").exists()


# --------------------------------------------------------------------------- mosaic


def _tile(r: int, c: int) -> tuple[np.ndarray, np.ndarray, Affine]:
    """Tile (r, c) of a 2 x 2 layout: distinct mask and dates per tile."""
    k = 2 * r + c
    mask = ((np.arange(NY * NX).reshape(NY, NX) + k) % 5).astype(np.uint8)
    dates = 19000 + 1000 * k + np.arange(NY * NX).reshape(NY, NX)
    transform = Affine(RES, 0, 500_000.0 + c * NX * RES, 0, -RES, 5_200_000.0 - r * NY * RES)
    return mask, dates, transform


def _write_tiles(root: Path) -> tuple[list[Path], list[Path], np.ndarray, np.ndarray]:
    masks, dates_, full_mask, full_dates = [], [], {}, {}
    for r in (0, 1):
        for c in (0, 1):
            mask, dates, transform = _tile(r, c)
            folder = root / "reports" / f"r{r}c{c}"
            write_tile_reports(mask, dates, UTM, transform, folder / "mask.tif",
                               folder / "detection_date.tif")
            masks.append(folder / "mask.tif")
            dates_.append(folder / "detection_date.tif")
            full_mask[r, c] = mask
            full_dates[r, c] = np.where(mask == 3, dates, 0)
    block = [[full_mask[0, 0], full_mask[0, 1]], [full_mask[1, 0], full_mask[1, 1]]]
    dblock = [[full_dates[0, 0], full_dates[0, 1]], [full_dates[1, 0], full_dates[1, 1]]]
    return masks, dates_, np.block(block), np.block(dblock)


def _check_mosaic(mask_vrt: Path, date_vrt: Path, exp_mask: np.ndarray,
                  exp_dates: np.ndarray) -> None:
    with rasterio.open(mask_vrt) as src:
        assert src.driver == "VRT"
        assert src.crs == CRS.from_epsg(32633)
        assert src.shape == (2 * NY, 2 * NX)
        assert src.transform == UTM_TRANSFORM
        assert src.bounds == (500_000.0, 5_200_000.0 - 2 * NY * RES,
                              500_000.0 + 2 * NX * RES, 5_200_000.0)
        np.testing.assert_array_equal(src.read(1), exp_mask)
        assert src.descriptions == ("mask",)
        assert src.nodata == 255
        assert src.colormap(1)[3] == (215, 25, 28, 255)
    with rasterio.open(date_vrt) as src:
        assert src.crs == CRS.from_epsg(32633)
        assert src.shape == (2 * NY, 2 * NX)
        assert src.dtypes[0] == "int32"
        got = src.read(1)
        np.testing.assert_array_equal(got, exp_dates)
        # spot check by world coordinates: pixel (2, 5) of tile (1, 1) (mask 3 there)
        mask11, dates11, t11 = _tile(1, 1)
        assert mask11[2, 5] == 3
        row, col = src.index(*(t11 * (5.5, 2.5)))
        assert (row, col) == (NY + 2, NX + 5)
        assert got[row, col] == dates11[2, 5] > 0
        assert src.descriptions == ("detection_date",)
        assert src.nodata == 0
        assert src.units == ("days since 1970-01-01",)


def test_build_vrt_mosaic_in_another_folder(tmp_path):
    run = tmp_path / "run"
    masks, dates, exp_mask, exp_dates = _write_tiles(run)
    # the tile order given must not matter
    mask_vrt, date_vrt = run / "mosaic" / "mask.vrt", run / "mosaic" / "detection_date.vrt"
    build_vrt(masks[::-1], mask_vrt)
    build_vrt([dates[1], dates[3], dates[0], dates[2]], date_vrt)
    _check_mosaic(mask_vrt, date_vrt, exp_mask, exp_dates)

    for vrt in (mask_vrt, date_vrt):
        text = vrt.read_text()
        assert str(tmp_path) not in text
        assert str(run) not in text
        root = ET.fromstring(text)
        names = root.findall(".//SourceFilename")
        assert len(names) == 4
        assert all(n.get("relativeToVRT") == "1" for n in names)
        assert all(not Path(n.text).is_absolute() for n in names)
        assert all(n.text.startswith("../reports/") for n in names)
    cats = [c.text or "" for c in ET.fromstring(mask_vrt.read_text()).iter("Category")]
    assert cats[3] == "confirmed break"
    assert cats[1] == "forest, no break"

    # move the whole run folder: relative paths still resolve
    moved = shutil.move(str(run), str(tmp_path / "elsewhere" / "run2"))
    assert not run.exists()
    _check_mosaic(Path(moved) / "mosaic" / "mask.vrt",
                  Path(moved) / "mosaic" / "detection_date.vrt", exp_mask, exp_dates)


def test_build_vrt_refuses_mixed_crs(tmp_path):
    mask, dates, transform = _tile(0, 0)
    write_tile_reports(mask, dates, UTM, transform, tmp_path / "a" / "mask.tif",
                       tmp_path / "a" / "date.tif")
    write_tile_reports(mask, dates, "EPSG:32632", transform, tmp_path / "b" / "mask.tif",
                       tmp_path / "b" / "date.tif")
    with pytest.raises(ValueError):
        build_vrt([tmp_path / "a" / "mask.tif", tmp_path / "b" / "mask.tif"],
                  tmp_path / "mosaic" / "mask.vrt")
    assert not (tmp_path / "mosaic" / "mask.vrt").exists()


def test_build_vrt_refuses_empty_list(tmp_path):
    with pytest.raises(ValueError):
        build_vrt([], tmp_path / "mask.vrt")
    assert not (tmp_path / "mask.vrt").exists()


def test_tile_reports_index_round_trip_and_errors(tmp_path):
    """The index the rules over every tile read (rule tile_reports_index): tiles in order,
    their folders and pieces; a missing pieces file or a damaged index is a clear error."""
    from forestwatch.reports import TileReportsIndex
    from forestwatch.steps import tile_reports_index

    tiles = ["X0002_Y0001", "X0001_Y0001"]
    pieces = [tmp_path / f"{t}.gpkg" for t in tiles]
    folders = [str(tmp_path / "reports" / t) for t in tiles]
    out = tmp_path / "reports" / "index.json"
    with pytest.raises(FileNotFoundError, match="2 tile report"):
        tile_reports_index(tiles=tiles, folders=folders, pieces=[str(p) for p in pieces], out=out)
    for p in pieces:
        p.write_bytes(b"")
    tile_reports_index(tiles=tiles, folders=folders, pieces=[str(p) for p in pieces], out=out)
    index = TileReportsIndex.read(out)
    assert index.tiles == tiles  # the rule's order, not sorted
    assert list(index.pieces.values()) == [str(p) for p in pieces]
    assert index.folders[tiles[1]] == folders[1]
    out.write_text('{"format": 1, "tiles": [{"tile": "X0001_Y0001", "folder": "x"}]}')
    with pytest.raises(ValueError, match="cannot be read.*delete it"):
        TileReportsIndex.read(out)
    out.write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        TileReportsIndex.read(out)
