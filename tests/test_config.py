"""Config validation: defaults are filled, and every mistake names the key and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from forestwatch.config import ConfigError, deep_update, load_config, load_schema, validate_config


def test_empty_config_gets_every_default():
    cfg = validate_config({})
    assert set(cfg) == set(load_schema()["properties"])
    assert cfg["monitor"]["class"] == "IQR"
    assert cfg["stac"]["source"] == "synthetic"
    assert cfg["stac"]["resampling"] == {"reflectance": "bilinear", "scl": "nearest"}
    assert cfg["forest_mask"]["rule"]["swir_band"] == "swir22"


def test_input_is_not_modified():
    raw = {"index": "NBR"}
    validate_config(raw)
    assert raw == {"index": "NBR"}


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"monitr": {}}, "'monitr'"),
        ({"monitor": {"clas": "IQR"}}, "'clas'"),
        ({"stac": {"max_cloudcover": 50}}, "'max_cloudcover'"),
    ],
)
def test_unknown_keys_are_refused_with_the_allowed_ones(cfg, key):
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert f"unknown config key(s) {key}" in msg
    assert "allowed keys:" in msg


def test_nested_unknown_key_names_its_section():
    with pytest.raises(ConfigError, match="under 'monitor'.*allowed keys: block_size, class, fit, params"):
        validate_config({"monitor": {"clas": "IQR"}})


@pytest.mark.parametrize(
    "cfg, fragment",
    [
        ({"index": "NDVX"}, "config key 'index' is 'NDVX'; allowed values: 'NDVI', 'NBR', 'NDMI'"),
        ({"monitor": {"class": "Foo"}}, "config key 'monitor.class' is 'Foo'"),
        ({"stac": {"source": "s3"}}, "config key 'stac.source' is 's3'"),
        ({"grid": {"resolution": "twenty"}}, "config key 'grid.resolution': 'twenty' is not of type 'number'"),
        ({"grid": {"resolution": -20}}, "config key 'grid.resolution'"),
        ({"stac": {"max_cloud_cover": 120}}, "config key 'stac.max_cloud_cover'"),
        ({"stac": {"bands": {"redd": "B04"}}}, "config key 'stac.bands'"),
        ({"aoi": {"bbox": [1, 2, 3]}}, "config key 'aoi.bbox'"),
    ],
)
def test_bad_values_name_the_key(cfg, fragment):
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    "cfg, fragments",
    [
        ({"history": {"start": "2023-01-01", "end": "2022-01-01"}},
         ["'history.start' (2023-01-01) must be before 'history.end' (2022-01-01)"]),
        ({"history": {"end": "2023-13-40"}}, ["'history.end'", "YYYY-MM-DD"]),
        ({"fast_forward": {"until": "2023-01-01"}}, ["'fast_forward.until'", "after 'history.end'"]),
        ({"grid": {"tile_size": 3010}}, ["'grid.tile_size' (3010)", "multiple of 'grid.resolution'"]),
        ({"grid": {"crs": "EPSG:4326"}}, ["'grid.crs'", "geographic", "projected"]),
        ({"grid": {"crs": "EPSG:999999"}}, ["'grid.crs'", "not a known CRS"]),
        ({"aoi": {"bbox": [12.0, 50.0, 11.0, 51.0]}}, ["'aoi.bbox'", "xmin < xmax"]),
        ({"aoi": {"bbox": None}}, ["'aoi' needs either 'bbox' or 'file'"]),
        ({"stac": {"source": "stac_api"}}, ["'stac.url' is required"]),
        ({"stac": {"source": "local"}}, ["'stac.catalog' is required"]),
        ({"synthetic": {"start": "2024-01-01", "end": "2023-01-01"}}, ["'synthetic.start'"]),
    ],
)
def test_semantic_errors_say_what_to_do(cfg, fragments):
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_missing_files_are_named(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="'stac.catalog' points to .*nope.json.*does not exist"):
        validate_config({"stac": {"source": "local", "catalog": missing}})
    with pytest.raises(ConfigError, match="'aoi.file' points to .*nope.gpkg.*does not exist"):
        validate_config({"aoi": {"file": str(tmp_path / "nope.gpkg")}})
    with pytest.raises(ConfigError, match="'forest_mask.file.path' points to .*nope.tif"):
        validate_config({"forest_mask": {"method": "file", "file": {"path": str(tmp_path / "nope.tif")}}})


def test_file_mask_needs_a_path_outside_the_demo():
    with pytest.raises(ConfigError, match="'forest_mask.file.path' is required"):
        validate_config({"stac": {"source": "stac_api", "url": "http://127.0.0.1:1/"},
                         "forest_mask": {"method": "file"}})
    # the demo archive brings its own tree-cover raster
    assert validate_config({"forest_mask": {"method": "file"}})["forest_mask"]["file"]["path"] is None


@pytest.mark.parametrize(
    "monitor, fragment",
    [
        ({"class": "IQR", "params": {"lambda_": 0.3}}, "'monitor.params.lambda_' is not a parameter of nrt's IQR"),
        ({"class": "IQR", "params": {"mask": 1}}, "'monitor.params.mask'"),
        ({"class": "EWMA", "fit": {"alpha": 0.05}}, "'monitor.fit.alpha' is not a fit() argument of nrt's EWMA"),
        ({"class": "IQR", "fit": {"method": "FOO"}}, "'monitor.fit.method' is 'FOO'"),
        ({"class": "IQR", "fit": {"screen_outliers": "Hampel"}}, "'monitor.fit.screen_outliers'"),
        ({"class": "CCDC", "params": {"trend": False}, "fit": {"method": "CCDC-stable"}},
         "needs 'monitor.params.trend: true'"),
        ({"class": "IQR", "params": {"sensitivity": [1, 2]}}, "must be a single value"),
    ],
)
def test_monitor_parameters_are_checked_against_nrt(monitor, fragment):
    with pytest.raises(ConfigError) as err:
        validate_config({"monitor": monitor})
    assert fragment in str(err.value)


def test_every_monitor_class_accepts_its_own_parameters():
    for monitor in (
        {"class": "EWMA", "params": {"lambda_": 0.2, "threshold_outlier": 6}, "fit": {"method": "OLS"}},
        {"class": "CuSum", "params": {"sensitivity": 0.1}, "fit": {"method": "ROC", "alpha": 0.1}},
        {"class": "MoSum", "params": {"h": 0.5, "trend": False}, "fit": {"method": "ROC"}},
        {"class": "CCDC", "params": {"sensitivity": 2.5}, "fit": {"method": "CCDC-stable", "screen_outliers": None}},
        {"class": "IQR", "params": {"save_fit_start": True, "update_mask": True}, "fit": {"method": "RIRLS", "maxiter": 5}},
    ):
        assert validate_config({"monitor": monitor})["monitor"]["class"] == monitor["class"]


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("index: [NDVI\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("index: NBR\n")
    cfg = load_config(good, overrides={"monitor": {"class": "CCDC"}})
    assert cfg["index"] == "NBR" and cfg["monitor"]["class"] == "CCDC"


def test_deep_update_merges_nested_dicts():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}
    out = deep_update(base, {"a": {"c": {"f": 3}}, "e": [2]})
    assert out == {"a": {"b": 1, "c": {"d": 2, "f": 3}}, "e": [2]}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}


def test_monitor_parameters_read_from_source_match_nrt():
    """The config check reads nrt's signatures without importing nrt (numba costs ~2 s at
    every workflow parse); what it reads must be what nrt accepts."""
    import inspect

    from forestwatch.config import MONITOR_CLASSES, monitor_class, monitor_init_params

    for name in MONITOR_CLASSES:
        params = inspect.signature(monitor_class(name).__init__).parameters
        expected = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        assert set(monitor_init_params(name)) == expected, name


def test_validating_a_config_does_not_import_nrt():
    code = ("import sys, yaml; from forestwatch.config import validate_config; "
            f"validate_config(yaml.safe_load(open({str(REPO / 'config' / 'config.yaml')!r}))); "
            "assert 'nrt' not in sys.modules and 'numba' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
