"""Forest masks (forestwatch.forest_mask): harmonic intercept, tree-cover warping, the
history rule, and the mask file round trip. The synthetic archive's truth/forest.tif is the
reference; tree_cover.tif is the same landscape's tree-cover density in EPSG:4326."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
from affine import Affine
from rasterio.windows import from_bounds

from forestwatch.forest_mask import (
    harmonic_intercept,
    mask_from_rule,
    mask_from_tree_cover,
    read_mask,
    write_mask,
)
from forestwatch.grid import Tile, make_tiles
from forestwatch.stac import NoDataError, search_items


def _truth_on_tile(folder: Path, name: str, tile: Tile) -> np.ndarray:
    with rasterio.open(Path(folder) / "truth" / f"{name}.tif") as src:
        window = from_bounds(*tile.bounds, transform=src.transform)
        data = src.read(1, window=window)
    assert data.shape == tile.shape
    return data


# --------------------------------------------------------------------------- harmonic fit


def _series(n_time=80, shape=(4, 5), seed=1):
    rng = np.random.default_rng(seed)
    time = pd.date_range("2021-01-03", periods=n_time, freq="9D")
    w = 2 * np.pi * time.day_of_year.values / 365.25
    a = rng.uniform(0.2, 0.9, shape)
    b = rng.uniform(-0.3, 0.3, shape)
    c = rng.uniform(-0.3, 0.3, shape)
    values = (a[None] + b[None] * np.cos(w)[:, None, None] + c[None] * np.sin(w)[:, None, None])
    return time, values, a


def test_harmonic_intercept_recovers_mean_level_with_gaps():
    time, clean, a = _series()
    values = clean.copy()
    rng = np.random.default_rng(7)
    values[rng.random(values.shape) < 0.3] = np.nan
    values[:, 0, :3] = np.nan
    values[[5, 40], 0, 0] = clean[[5, 40], 0, 0]  # two observations: underdetermined
    # pixel (0, 1) is never observed; pixel (0, 2) exactly three times: determined
    values[[3, 30, 61], 0, 2] = clean[[3, 30, 61], 0, 2]
    da = xr.DataArray(values.astype(np.float32), dims=("time", "y", "x"), coords={"time": time})
    intercept, n = harmonic_intercept(da)

    assert intercept.dtype == np.float32 and n.dtype == np.int32
    assert intercept.shape == n.shape == (4, 5)
    assert np.array_equal(n, np.isfinite(values).sum(axis=0))
    assert n[0, 0] == 2 and n[0, 1] == 0 and n[0, 2] == 3
    assert np.isnan(intercept[0, 0]) and np.isnan(intercept[0, 1])
    assert intercept[0, 2] == pytest.approx(a[0, 2], abs=1e-4)
    full = n >= 10
    assert full.sum() == 17
    np.testing.assert_allclose(intercept[full], a[full], atol=1e-5)


def test_harmonic_intercept_is_not_the_plain_mean():
    """Observations only in summer: the plain mean is biased, the harmonic intercept not."""
    time, values, a = _series(n_time=120, seed=3)
    summer = (time.month >= 5) & (time.month <= 8)
    values[~summer] = np.nan
    da = xr.DataArray(values, dims=("time", "y", "x"), coords={"time": time})
    intercept, _ = harmonic_intercept(da)
    np.testing.assert_allclose(intercept, a, atol=1e-4)
    plain = np.nanmean(values, axis=0)
    assert np.abs(plain - a).max() > 0.05


def test_low_outliers_are_screened_before_the_intercept():
    """Unflagged haze and snow pull NDVI down on 15 % of the dates: the plain fit's
    intercept falls with them, the screened one stays at the true level (module
    docstring of forest_mask._rule); clean pixels lose no observation."""
    from forestwatch.forest_mask._rule import low_outliers

    time, clean, a = _series(n_time=120, seed=5)
    rng = np.random.default_rng(11)
    values = clean + rng.normal(0, 0.01, clean.shape)
    hazy = rng.random(values.shape) < 0.15
    hazy[:, 0, 0] = False  # one clean pixel
    values[hazy] -= rng.uniform(0.15, 0.4, hazy.sum())
    da = xr.DataArray(values.astype(np.float32), dims=("time", "y", "x"),
                      coords={"time": time})
    plain, _ = harmonic_intercept(da)
    drop = low_outliers(da, 2.0)
    screened, n = harmonic_intercept(da, exclude=drop)

    assert drop.shape == values.shape and drop.dtype == bool
    assert (drop & ~hazy).sum() <= 0.02 * (~hazy).sum()  # few clean observations dropped
    assert drop[hazy].mean() > 0.9
    biased = np.abs(plain - a)
    assert biased[0, 0] < 0.005 and np.delete(biased.ravel(), 0).min() > 0.02
    np.testing.assert_allclose(screened, a, atol=0.01)
    assert n[0, 0] >= 110


def test_column_median_matches_numpy_with_gaps_and_empty_columns():
    """The rule's residual median (a sort of each pixel's dates) gives numpy's nanmedian
    for odd, even, single and no observations, and leaves its input as it was."""
    from forestwatch.forest_mask._rule import _column_nanmedian

    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 200))
    a[rng.random(a.shape) < 0.4] = np.nan
    a[:, 0] = np.nan  # never observed
    a[:, 1:3] = np.nan
    a[0, 1] = 0.3  # once
    a[:2, 2] = (0.1, 0.4)  # twice
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(a, axis=0)
    got = _column_nanmedian(a)
    assert np.isnan(got[0]) and got[1] == 0.3 and got[2] == 0.25
    np.testing.assert_array_equal(got, expected)
    # it sorts a copy laid out pixel by pixel, never its input, whatever the input's order
    fortran = np.asfortranarray(a)
    np.testing.assert_array_equal(_column_nanmedian(fortran), expected)
    np.testing.assert_array_equal(fortran, a)


def test_the_rule_gives_each_pixel_the_same_numbers_in_any_strip_on_any_thread(monkeypatch):
    """The rule's classifier works in strips of rows, on one thread or several
    (forest_mask._rule.rule_classifier): each pixel's screened observations and
    intercepts are bit for bit those the whole cube gives it, whatever the strip, so the
    mask is the same for any strip height and thread count."""
    from forestwatch.forest_mask import _rule
    from forestwatch.stac import spectral_index

    time, level, _ = _series(n_time=90, shape=(24, 30), seed=7)
    rng = np.random.default_rng(8)
    nir = 0.3 + 0.1 * level + rng.normal(0, 0.01, level.shape)
    red = 0.3 - 0.25 * level + rng.normal(0, 0.01, level.shape)
    swir = 0.2 - 0.1 * level + rng.normal(0, 0.01, level.shape)
    cloudy = rng.random(level.shape) < 0.3
    hazy = rng.random(level.shape) < 0.1
    nir[hazy] -= 0.1
    bands = {"red": red, "nir": nir, "swir22": swir}
    cube = xr.Dataset({name: (("time", "y", "x"), np.where(cloudy, np.nan, v).astype(np.float32))
                       for name, v in bands.items()}, coords={"time": time})
    ndvi = spectral_index(cube, "NDVI")
    drop = _rule.low_outliers(ndvi, 2.0)
    ndvi_i, n = _rule.harmonic_intercept(ndvi, exclude=drop)
    swir_i, _ = _rule.harmonic_intercept(cube["swir22"], exclude=drop)
    for rows in (1, 7, 17):
        strips = [slice(r, r + rows) for r in range(0, 24, rows)]
        got = [_rule.low_outliers(ndvi.isel(y=s), 2.0) for s in strips]
        assert np.concatenate(got, axis=1).tobytes() == drop.tobytes()
        got = [_rule.harmonic_intercept(ndvi.isel(y=s), exclude=drop[:, s]) for s in strips]
        assert np.concatenate([g[0] for g in got]).tobytes() == ndvi_i.tobytes()
        assert np.concatenate([g[1] for g in got]).tobytes() == n.tobytes()
    rule = {"ndvi_min": float(np.median(ndvi_i)), "swir_max": float(np.median(swir_i)),
            "swir_band": "swir22", "min_observations": 12, "screen_low_outliers": 2.0}
    expected = (ndvi_i >= rule["ndvi_min"]) & (swir_i <= rule["swir_max"]) & (n >= 12)
    assert 0.15 < expected.mean() < 0.85
    for strip_pixels in (60, 300, 10**6):
        monkeypatch.setattr(_rule, "STRIP_PIXELS", strip_pixels)
        for threads in (1, 2, 3):
            _, classify = _rule.rule_classifier(rule, threads=threads)
            assert (classify(cube) == expected).all(), (strip_pixels, threads)


# --------------------------------------------------------------------------- tree cover


def test_mask_from_tree_cover_agrees_with_truth(small_archive):
    folder = small_archive["folder"]
    tiles = make_tiles(small_archive["cfg"])
    assert len(tiles) == 2
    for tile in tiles:
        mask = mask_from_tree_cover(tile, folder / "truth" / "tree_cover.tif", 30)
        truth = _truth_on_tile(folder, "forest", tile)
        assert mask.dtype == np.uint8 and mask.shape == tile.shape
        assert set(np.unique(mask)) <= {0, 1}
        assert 0.2 < truth.mean() < 0.9  # both classes present: agreement is informative
        assert (mask == truth).mean() >= 0.95, tile.id


def _write_raster(path, data, crs, transform, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1],
                       count=1, dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata) as dst:
        dst.write(data, 1)


def test_mask_from_tree_cover_threshold_nodata_and_outside(tmp_path, small_archive):
    """A tree-cover raster on the tile grid covering only the western half: 100 % in the
    top-left quarter, 29 % / 30 % in the bottom-left quarter's left / right half, nodata in
    one column. East of the raster nothing is forest."""
    tile = make_tiles(small_archive["cfg"])[0]
    h, w = tile.shape
    cover = np.full((h, w // 2), 100, np.uint8)
    cover[h // 2:, : w // 4] = 29
    cover[h // 2:, w // 4:] = 30
    cover[:, 3] = 255
    path = tmp_path / "tcd.tif"
    _write_raster(path, cover, tile.crs, tile.transform, nodata=255)

    mask = mask_from_tree_cover(tile, path, 30, resampling="nearest")
    expected = np.zeros(tile.shape, np.uint8)
    expected[:, : w // 2] = cover >= 30
    expected[:, 3] = 0
    assert np.array_equal(mask, expected)


def test_mask_from_tree_cover_without_crs(tmp_path, small_archive):
    tile = make_tiles(small_archive["cfg"])[0]
    path = tmp_path / "nocrs.tif"
    _write_raster(path, np.full((10, 10), 80, np.uint8), None, Affine(20, 0, 0, 0, -20, 200))
    with pytest.raises(ValueError, match="no CRS"):
        mask_from_tree_cover(tile, path, 30)


# --------------------------------------------------------------------------- rule


def test_mask_from_rule_agrees_with_truth(small_archive):
    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]
    items = search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["start"],
                         cfg["history"]["end"], small_archive["catalog"])
    assert items
    mask = mask_from_rule(tile, items, cfg["forest_mask"]["rule"], cfg["stac"])
    truth = _truth_on_tile(small_archive["folder"], "forest", tile)
    assert mask.dtype == np.uint8 and mask.shape == tile.shape
    assert (mask == truth).mean() >= 0.95


def test_mask_from_rule_without_items(small_archive):
    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]
    with pytest.raises(NoDataError, match=tile.id):
        mask_from_rule(tile, [], cfg["forest_mask"]["rule"], cfg["stac"])


# --------------------------------------------------------------------------- the fit job


def test_the_fit_job_makes_the_rule_mask_from_the_fits_own_read(tmp_path, small_archive,
                                                                 monkeypatch):
    """Rule ``tile_state`` writes the mask and the fitted state from one read of the history: the
    same mask as the rule alone, and a second job with only the monitor changed keeps the
    mask file (reading once, for the fit); a changed rule makes a new mask."""
    import forestwatch.stac as stac
    from forestwatch import steps
    from forestwatch.config import deep_update, validate_config
    from forestwatch.forest_mask import read_mask_provenance
    from forestwatch.state import load_state

    cfg = small_archive["cfg"]
    assert cfg["forest_mask"]["method"] == "rule"
    tile = make_tiles(cfg)[0]
    assert max(tile.shape) <= cfg["monitor"]["block_size"]  # one block: one read per load
    reads = []
    real = stac.read_slices
    monkeypatch.setattr(stac, "read_slices", lambda *a, **k: reads.append(1) or real(*a, **k))
    mask_path, state_path = tmp_path / "mask.tif", tmp_path / "fitted.nc"

    def fit(config):
        # the mask's slice of the config, as rule tile_state's params.mask_cfg
        mask_cfg = {k: config[k] for k in ("grid", "stac", "history", "forest_mask")}
        reads.clear()
        steps.fit(config, tile.id, small_archive["catalog"], mask_cfg=mask_cfg,
                  mask_out=mask_path, out=state_path)
        return len(reads)

    assert fit(cfg) == 1
    items = search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["start"],
                         cfg["history"]["end"], small_archive["catalog"])
    alone = mask_from_rule(tile, items, cfg["forest_mask"]["rule"], cfg["stac"])
    np.testing.assert_array_equal(read_mask(mask_path, tile), alone)
    provenance = read_mask_provenance(mask_path)
    assert provenance["method"] == "rule" and "made_from_sha256" not in provenance
    assert load_state(state_path).forest_mask == provenance
    made = mask_path.stat().st_mtime_ns

    other_monitor = validate_config(deep_update(cfg, {"monitor": {"params": {"sensitivity": 3.0}}}))
    assert fit(other_monitor) == 1  # the fit's read alone
    assert mask_path.stat().st_mtime_ns == made
    assert load_state(state_path).members[0].monitor_config["params"]["sensitivity"] == 3.0

    stricter = validate_config(deep_update(cfg, {"forest_mask": {"rule": {"ndvi_min": 0.8}}}))
    assert fit(stricter) == 1
    assert mask_path.stat().st_mtime_ns != made
    assert read_mask(mask_path, tile).sum() < alone.sum()


def test_the_fitted_state_is_kept_while_made_from_the_same_inputs(tmp_path, small_archive):
    """Rule ``tile_state`` reruns for its fast-forward's sake (or forced) without fitting
    again: the fitted state is kept while its fit key (config, mask content, history items)
    matches; a mask edited by hand, or a history item more, fits again."""
    import json

    from forestwatch import steps
    from forestwatch.config import deep_update, validate_config
    from forestwatch.monitor import fit_key
    from forestwatch.state import load_state, read_ledger, save_state

    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]
    mask_path, state_path = tmp_path / "mask.tif", tmp_path / "fitted.nc"
    mask_cfg = {k: cfg[k] for k in ("grid", "stac", "history", "forest_mask")}

    def fit(catalog=small_archive["catalog"]):
        return steps.fit(cfg, tile.id, str(catalog), mask_cfg=mask_cfg, mask_out=mask_path,
                         out=state_path)

    assert fit() is True
    ledger, digest = read_ledger(state_path)
    assert len(ledger.fit.made_from) == 64
    written = state_path.stat().st_mtime_ns
    assert fit() is False  # kept: not written again
    assert state_path.stat().st_mtime_ns == written
    # how the source is reached is not what the mask and fit are made from; what is read is
    reached = validate_config(deep_update(cfg, {"stac": {"retries": 7, "timeout_s": 90}}))
    made = mask_path.stat().st_mtime_ns
    assert steps.fit(reached, tile.id, str(small_archive["catalog"]),
                     mask_cfg={k: reached[k] for k in mask_cfg}, mask_out=mask_path,
                     out=state_path) is False
    assert mask_path.stat().st_mtime_ns == made
    cloudier = validate_config(deep_update(cfg, {"stac": {"max_cloud_cover": 60}}))
    assert fit_key(cloudier, tile.id, read_mask(mask_path, tile), []) != fit_key(
        cfg, tile.id, read_mask(mask_path, tile), [])

    # a fitted state from before the key was recorded is fitted again, once
    old = load_state(state_path)
    old.ledger.fit.made_from = ""
    save_state(old, state_path)
    assert fit() is True and fit() is False

    # a mask edited by hand (its tags still match, so the mask is kept): fitted on it
    with rasterio.open(mask_path, "r+") as dst:
        band = dst.read(1)
        assert band.any()
        band[: band.shape[0] // 2] = 0
        dst.write(band, 1)
    assert fit() is True
    edited, edited_digest = read_ledger(state_path)
    assert edited.fit.made_from != ledger.fit.made_from and edited_digest != digest
    assert fit() is False

    # one more history item than the fit saw (published late into the history period)
    data = json.loads(Path(small_archive["catalog"]).read_text())
    root = Path(small_archive["catalog"]).parent
    for feature in data["features"]:
        for asset in feature["assets"].values():
            asset["href"] = str(root / asset["href"])
    fewer = [f for f in data["features"] if f["id"] != edited.fit.items[0]]
    assert len(fewer) == len(data["features"]) - 1
    catalog = tmp_path / "items.json"
    catalog.write_text(json.dumps({**data, "features": fewer}))
    assert fit(catalog) is True
    assert edited.fit.items[0] not in read_ledger(state_path)[0].fit.items
    assert fit(catalog) is False
    assert fit() is True  # and back: the item is there again


def test_a_mask_from_other_inputs_is_made_again(tmp_path, small_archive):
    """The kept-mask check: same config and tile -> kept; another tile, config or a
    replaced input file -> made again; a broken file counts as absent."""
    from forestwatch.forest_mask import kept_mask, mask_key

    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]
    cover = tmp_path / "cover.tif"
    cover.write_bytes(b"x" * 10)
    key = mask_key(cfg, tile.id, [cover])
    path = tmp_path / "mask.tif"
    assert kept_mask(path, tile, key) is None  # no file
    write_mask(np.ones(tile.shape, dtype=np.uint8), tile, path, "unit test", made_from=key)
    mask, provenance = kept_mask(path, tile, key)
    assert mask.all() and provenance["source"] == "unit test"
    assert mask_key(cfg, "X0000_Y0000", [cover]) != key
    assert mask_key({**cfg, "history": {"start": "2020-01-01"}}, tile.id, [cover]) != key
    cover.write_bytes(b"y" * 11)
    assert kept_mask(path, tile, mask_key(cfg, tile.id, [cover])) is None
    path.write_bytes(b"not a tiff")
    assert kept_mask(path, tile, key) is None


# --------------------------------------------------------------------------- files


def test_write_read_mask_round_trip(tmp_path, small_archive):
    tiles = make_tiles(small_archive["cfg"])
    tile, other = tiles[0], tiles[1]
    rng = np.random.default_rng(0)
    mask = (rng.random(tile.shape) < 0.6).astype(np.uint8)
    path = tmp_path / "mask.tif"
    write_mask(mask, tile, path, source="unit test")
    back = read_mask(path, tile)
    assert back.dtype == np.uint8
    assert np.array_equal(back, mask)
    with rasterio.open(path) as src:
        assert src.crs.to_string() == tile.crs
        assert src.transform.almost_equals(tile.transform)
        assert src.nodata == 255
        assert src.tags(1)["source"] == "unit test"

    # the same shape but another tile's place on the grid
    assert other.shape == tile.shape
    with pytest.raises(ValueError, match=other.id):
        read_mask(path, other)


def test_read_mask_maps_everything_but_one_to_zero(tmp_path, small_archive):
    tile = make_tiles(small_archive["cfg"])[0]
    raw = np.zeros(tile.shape, np.uint8)
    raw[0, :4] = [1, 2, 255, 3]
    path = tmp_path / "mask.tif"
    write_mask(raw, tile, path, source="unit test")
    back = read_mask(path, tile)
    assert back[0, :4].tolist() == [1, 0, 0, 0]
    assert back.sum() == 1
