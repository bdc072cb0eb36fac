"""Fitting in blocks, cloudy and empty periods, fast-forward and its ledger, detection."""

from __future__ import annotations

import copy
import datetime as dt
import warnings

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from forestwatch.acquisitions import by_solar_day
from forestwatch.config import deep_update, validate_config
from forestwatch.forest_mask import mask_from_tree_cover
from forestwatch.grid import make_tiles
from forestwatch.monitor import fit_tile, forward_items
from forestwatch.stac import NoDataError, load_reflectance, search_items
from forestwatch.state import monitors_equal


def fast_forward(state, items, tile, cfg):
    """The days of ``items`` monitored on ``state`` (in memory): their ledger entries."""
    return forward_items(state, items, tile, cfg)[1]


def _cfg(base: dict, **overrides) -> dict:
    return validate_config(deep_update(base, overrides))


def _with_monitor(base: dict, monitor: dict, block_size: int) -> dict:
    """``base`` with its monitor section replaced (not merged: params differ per class)."""
    cfg = copy.deepcopy(base)
    cfg["monitor"] = dict(monitor, block_size=block_size)
    return validate_config(cfg)


def _items(cfg, tile, start, end):
    return search_items(cfg["stac"], tile.bbox_lonlat(), start, end, cfg["stac"]["catalog"])


@pytest.fixture(scope="module")
def tile_inputs(small_archive):
    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]
    mask = mask_from_tree_cover(tile, small_archive["folder"] / "truth" / "tree_cover.tif", 30)
    hist = _items(cfg, tile, cfg["history"]["start"], cfg["history"]["end"])
    new = _items(cfg, tile, cfg["history"]["end"], cfg["fast_forward"]["until"])
    return cfg, tile, mask, hist, new


def _slicing_loader(tile):
    """Load the whole tile once and hand out block slices: isolates the block logic from
    GDAL's approximate warp transformer, whose ~1e-5 differences depend on the window."""
    from forestwatch.stac import load_reflectance

    cache = {}

    def loader(items, geobox, bands, stac_cfg, threads=1):
        key = tuple(bands)
        if key not in cache:
            cache[key] = load_reflectance(items, tile.geobox, bands, stac_cfg, threads=2)
        full = cache[key]
        r0 = round((tile.bounds[3] - geobox.boundingbox.top) / tile.resolution)
        c0 = round((geobox.boundingbox.left - tile.bounds[0]) / tile.resolution)
        h, w = geobox.shape
        return full.isel(y=slice(r0, r0 + h), x=slice(c0, c0 + w))

    return loader


@pytest.mark.parametrize(
    "monitor",
    [
        {"class": "IQR", "params": {"trend": False, "harmonic_order": 2}, "fit": {"method": "OLS"}},
        {"class": "MoSum", "params": {"trend": False}, "fit": {"method": "ROC"}},
    ],
)
def test_block_fit_equals_whole_tile_fit(tile_inputs, monitor):
    cfg, tile, mask, hist, _ = tile_inputs
    loader = _slicing_loader(tile)
    whole = fit_tile(tile, hist, mask, _with_monitor(cfg, monitor, 512), loader=loader)
    # 60 x 60 px in blocks of 16: 16 blocks, the edge ones 12 px wide
    blocks = fit_tile(tile, hist, mask, _with_monitor(cfg, monitor, 16), loader=loader)
    a, b = vars(whole.monitor), vars(blocks.monitor)
    assert set(a) == set(b)
    np.testing.assert_array_equal(a["mask"], b["mask"])
    # blocks without forest are not fitted: their (never read) values are zeros, where a
    # whole-tile nrt fit may leave NaN; compare every array on the pixels nrt monitors
    fitted = a["mask"] != 0
    assert fitted.any()
    for name in a:
        x, y = a[name], b[name]
        if name in ("x", "y"):
            np.testing.assert_array_equal(x, y)
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape[-2:] == y.shape[-2:], name
            if x.ndim == 3:  # MoSum window depth: the longest window of a block; zero pad
                depth = min(x.shape[0], y.shape[0])
                assert not np.any(x[depth:][:, fitted]) and not np.any(y[depth:][:, fitted])
                x, y = x[:depth], y[:depth]
            np.testing.assert_array_equal(x[..., fitted], y[..., fitted], err_msg=name)
        else:
            assert x == y, name


def test_block_fit_with_real_windowed_loads_is_close(tile_inputs):
    cfg, tile, mask, hist, _ = tile_inputs
    whole = fit_tile(tile, hist, mask, _cfg(cfg, monitor={"block_size": 512}))
    blocks = fit_tile(tile, hist, mask, _cfg(cfg, monitor={"block_size": 32}))
    np.testing.assert_array_equal(whole.monitor.mask, blocks.monitor.mask)
    np.testing.assert_allclose(whole.monitor.beta, blocks.monitor.beta, atol=1e-3)


def test_history_without_items_is_a_clear_error(tile_inputs):
    cfg, tile, mask, _, _ = tile_inputs
    cfg = _cfg(cfg, history={"start": "2010-01-01", "end": "2010-12-31"},
               fast_forward={"until": "2011-06-30"})
    items = _items(cfg, tile, cfg["history"]["start"], cfg["history"]["end"])
    assert items == []
    with pytest.raises(NoDataError) as err:
        fit_tile(tile, items, mask, cfg)
    msg = str(err.value)
    assert tile.id in msg and "2010-01-01" in msg and "history" in msg


def test_fully_cloudy_history_is_a_clear_error(tile_inputs):
    cfg, tile, mask, hist, _ = tile_inputs
    cloudy = _cfg(cfg, stac={"valid_scl_classes": [11]})  # snow only: nothing is clear
    with pytest.raises(NoDataError, match="too cloudy or too short"):
        fit_tile(tile, hist, mask, cloudy)


def test_partly_cloudy_blocks_are_marked_not_enough_observations(tile_inputs):
    cfg, tile, mask, hist, _ = tile_inputs
    real = __import__("forestwatch.stac", fromlist=["load_reflectance"]).load_reflectance

    def loader(items, geobox, bands, stac_cfg, threads=1):
        cube = real(items, geobox, bands, stac_cfg, threads=threads)
        if geobox.boundingbox.left == tile.bounds[0] and geobox.boundingbox.top == tile.bounds[3]:
            for b in bands:  # the north-west block never sees the ground
                cube[b].values[:] = np.nan
        return cube

    c = _cfg(cfg, monitor={"block_size": 32})
    state = fit_tile(tile, hist, mask, c, loader=loader)
    nw = state.monitor.mask[:32, :32]
    assert set(np.unique(nw[mask[:32, :32] == 1])) == {4}
    assert np.all(nw[mask[:32, :32] == 0] == 0)
    assert (state.monitor.mask[32:, 32:] == 1).any()


def test_empty_forest_mask_monitors_nothing(tile_inputs):
    cfg, tile, _, hist, new = tile_inputs
    state = fit_tile(tile, hist, np.zeros(tile.shape, np.uint8), cfg)
    assert not state.monitor.mask.any()
    added = fast_forward(state, new, tile, cfg)
    assert added and all(e.valid_pixels == 0 for e in added)
    assert not state.monitor.detection_date.any()


@pytest.fixture(scope="module")
def fitted(tile_inputs):
    cfg, tile, mask, hist, _ = tile_inputs
    return fit_tile(tile, hist, mask, cfg)


def test_fit_records_its_inputs(fitted, tile_inputs):
    cfg, tile, _, hist, _ = tile_inputs
    assert fitted.tile_id == tile.id and fitted.index == cfg["index"]
    assert fitted.ledger.fit.items == [it.id for d in by_solar_day(hist).values() for it in d]
    assert fitted.monitor_config["params"] == cfg["monitor"]["params"]
    assert fitted.ledger.applied == [] and fitted.ledger.fitted_from is None
    assert fitted.crs == "EPSG:3035" and fitted.transform == tile.transform


def test_fast_forward_applies_each_day_once_in_order(fitted, tile_inputs):
    cfg, tile, _, _, new = tile_inputs
    state = copy.deepcopy(fitted)
    added = fast_forward(state, new, tile, cfg)
    days = [e.day for e in added]
    assert days == sorted(days) and len(days) == len(set(days)) == len(by_solar_day(new))
    assert days[0] > cfg["history"]["end"] and days[-1] <= cfg["fast_forward"]["until"]
    assert state.ledger.applied == added
    assert state.ledger.applied_item_ids == {it.id for it in new}
    assert all(e.run == "fast_forward" and len(e.acquisitions) == len(e.items) for e in added)

    before = copy.deepcopy(state.monitor)
    assert fast_forward(state, new, tile, cfg) == []  # nothing new: nothing applied
    assert monitors_equal(before, state.monitor)

    # a reprocessed version of an applied acquisition (same granule and sensing time,
    # newer baseline) is not applied on an in-memory state: it is recorded as skipped
    reprocessed = copy.deepcopy(new[0])
    reprocessed.id += "_N0510"
    reprocessed.properties["s2:processing_baseline"] = "05.10"
    assert fast_forward(state, [reprocessed], tile, cfg) == []
    skip = next(s for s in state.ledger.skipped if s.item == reprocessed.id)
    assert "reprocessed version of applied " + new[0].id in skip.reason
    # another acquisition older than the last applied day is recorded, not applied
    late = copy.deepcopy(new[0])
    late.id += "_late"
    late.datetime = late.datetime + dt.timedelta(minutes=30)
    late.properties["datetime"] = late.datetime.isoformat()
    assert fast_forward(state, [late], tile, cfg) == []
    skip = next(s for s in state.ledger.skipped if s.item == late.id)
    assert skip.reason.startswith("late:") and skip.day == days[0]
    assert monitors_equal(before, state.monitor)
    with pytest.raises(ValueError, match="not after the last monitored day"):
        state.ledger.record_day(added[0])  # the ledger itself refuses disorder


def test_detections_against_truth(fitted, tile_inputs, small_archive):
    cfg, tile, mask, _, new = tile_inputs
    state = copy.deepcopy(fitted)
    fast_forward(state, new, tile, cfg)
    truth = small_archive["folder"] / "truth"

    def read(name):
        with rasterio.open(truth / name) as src:
            win = from_bounds(*tile.bounds, transform=src.transform)
            return src.read(1, window=win.round_offsets().round_lengths())

    forest, day = read("forest.tif") == 1, read("disturbance_date.tif")
    until = (dt.date.fromisoformat(cfg["fast_forward"]["until"]) - dt.date(1970, 1, 1)).days
    m, d = state.monitor.mask, state.monitor.detection_date.astype(np.int64)
    disturbed = forest & (mask == 1) & (day > 0) & (day < until - 30)
    stable = forest & (mask == 1) & (day == 0)
    assert disturbed.sum() > 30
    hit = (m == 3) & (d >= day)
    assert hit[disturbed].mean() > 0.7
    assert (m == 3)[stable].mean() < 0.05


def test_windowed_nearest_load_equals_slice_of_tile_load(small_archive):
    """With nearest resampling a block's load is exactly the block of the tile's load (the
    block fit's premise); tile straddling both granules, a few days of each baseline."""
    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]
    stac_cfg = dict(cfg["stac"], resampling={"reflectance": "nearest", "scl": "nearest"})
    found = search_items(stac_cfg, tile.bbox_lonlat(), "2022-01-01", "2022-03-31",
                         small_archive["catalog"])
    assert {i.properties["s2:processing_baseline"] for i in found} == {"03.01", "04.00"}
    whole = load_reflectance(found, tile.geobox, ["red", "nir"], stac_cfg)
    for rows, cols in ((slice(0, 16), slice(0, 16)), (slice(16, 32), slice(44, 60)),
                       (slice(48, 60), slice(0, 16))):
        part = load_reflectance(found, tile.geobox[rows, cols], ["red", "nir"], stac_cfg)
        for band in ("red", "nir", "clear"):
            np.testing.assert_array_equal(part[band].values, whole[band].values[:, rows, cols])


def test_fast_forward_in_two_runs_equals_one_run(small_archive):
    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]
    hist = search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["start"],
                        cfg["history"]["end"], small_archive["catalog"])
    new = search_items(cfg["stac"], tile.bbox_lonlat(), cfg["history"]["end"],
                       cfg["fast_forward"]["until"], small_archive["catalog"])
    mask = np.ones(tile.shape, np.uint8)
    state = fit_tile(tile, hist, mask, cfg)
    once, twice = copy.deepcopy(state), copy.deepcopy(state)
    fast_forward(once, new, tile, cfg)
    days = sorted({i.datetime.date() for i in new})
    early = [i for i in new if i.datetime.date() <= days[len(days) // 2]]  # whole days only
    first = fast_forward(twice, early, tile, cfg)
    second = fast_forward(twice, new, tile, cfg)  # the first half again: already applied
    assert first and second and not twice.ledger.skipped
    assert [e.day for e in first + second] == [e.day for e in once.ledger.applied]
    assert twice.ledger.applied == once.ledger.applied
    assert monitors_equal(once.monitor, twice.monitor)
    assert (once.monitor.mask == 3).any()  # the comparison covers detections


def test_ccdc_with_green_and_swir_screening(tile_inputs):
    """CCDC's default outlier screening needs the green and SWIR bands: the fit loads them."""
    from forestwatch.monitor import needed_bands

    cfg, tile, mask, hist, new = tile_inputs
    ccdc = _with_monitor(cfg, {"class": "CCDC", "params": {},
                               "fit": {"method": "CCDC-stable", "screen_outliers": "CCDC_RIRLS"}},
                         512)
    from forestwatch.stac import INDEX_BANDS

    index_bands = list(INDEX_BANDS[cfg["index"]])
    assert needed_bands(ccdc) == index_bands + [b for b in ("green", "swir16")
                                                if b not in index_bands]
    state = fit_tile(tile, hist, mask, ccdc)
    assert type(state.monitor).__name__ == "CCDC"
    assert (state.monitor.mask == 1).sum() > 0.5 * (mask == 1).sum()
    fast_forward(state, new, tile, ccdc)
    assert state.monitor.detection_date is not None


@pytest.mark.parametrize("fit,params,dtype", [
    ({"method": "OLS"}, {"trend": False, "harmonic_order": 1}, np.float32),
    ({"method": "OLS"}, {"trend": True, "harmonic_order": 3}, np.float32),
    ({"method": "OLS"}, {"trend": True, "harmonic_order": 1}, np.float64),
    ({"method": "OLS", "screen_outliers": None}, {"trend": False, "harmonic_order": 2},
     np.int16),
    ({"method": "ROC"}, {"trend": False, "harmonic_order": 1}, np.float32),
    ({"method": "OLS", "screen_outliers": "Shewhart"}, {"trend": False, "harmonic_order": 1},
     np.float32)])
def test_iqr_fit_gives_nrts_own_fit_bit_for_bit(fit, params, dtype):
    """The workflow's IQR fit (forestwatch.monitor._iqr_fit: nrt's steps, the OLS fit's
    data preparation compiled, its quantiles for the fitted pixels only, in parallel)
    leaves the monitor with the arrays of nrt's own ``IQR.fit``, byte for byte, and warns
    as nrt does: on a series with gaps, a pixel too cloudy to fit (nrt marks it 4), pixels
    outside the mask, (ROC) pixels nrt marks unstable after fitting them, several design
    matrices and the cube's dtypes (an integer cube is scaled reflectance)."""
    import pandas as pd
    import xarray as xr
    from nrt.monitor.iqr import IQR

    from forestwatch.monitor._iqr_fit import fit_iqr

    rng = np.random.default_rng(3)
    days = pd.date_range("2020-01-01", periods=120, freq="6D")
    season = 0.6 + 0.2 * np.sin(2 * np.pi * days.dayofyear.values / 365.25)
    values = season[:, None, None] + rng.normal(0, 0.03, (len(days), 30, 40))
    values[60:, :5, :5] -= 0.4  # a break inside the history: ROC drops its start
    values[rng.random(values.shape) < 0.3] = np.nan
    values[:, 7, 9] = np.nan  # never observed
    values[5:, 8, 9] = np.nan  # too short a series
    values[:, 9, 9] = np.nan  # exactly 6 observations: 1.5 x the 4 regressors of a trend
    values[::20, 9, 9] = season[::20]  # and one harmonic, just long enough to fit
    if np.issubdtype(dtype, np.integer):
        values = np.where(np.isnan(values), 0, values * 10000)  # no NaN in integers
    index = xr.DataArray(values.astype(dtype), dims=("time", "y", "x"),
                         coords={"time": days.values, "y": np.arange(30.0),
                                 "x": np.arange(40.0)})
    mask = (rng.random((30, 40)) < 0.7).astype(np.uint8)
    mask[7:10, 9] = 1
    ours, nrts = (IQR(mask=mask.copy(), **params) for _ in range(2))
    with warnings.catch_warnings(record=True) as said_ours:
        warnings.simplefilter("always")
        fit_iqr(ours, index, n_threads=2, **fit)
    with warnings.catch_warnings(record=True) as said_nrts:
        warnings.simplefilter("always")
        nrts.fit(index, n_threads=2, **fit)
    assert [str(w.message) for w in said_ours] == [str(w.message) for w in said_nrts]
    assert set(vars(ours)) == set(vars(nrts))
    for name, value in vars(nrts).items():
        if isinstance(value, np.ndarray):
            mine = vars(ours)[name]
            assert mine.dtype == value.dtype and mine.shape == value.shape, name
            assert mine.tobytes() == value.tobytes(), name
        else:
            assert vars(ours)[name] == value, name
    if not np.issubdtype(dtype, np.integer):
        assert (ours.mask[7:9, 9] == 4).all()  # too few observations: nrt's class 4
        assert "shorter than 1.5x" in str(said_ours[0].message)
    assert (ours.q25[mask == 0] == 0).all() and (ours.q75 > ours.q25)[mask == 1].mean() > 0.9
    if fit["method"] == "ROC":
        assert (ours.mask == 2).any()  # unstable pixels keep their quantiles, as in nrt
