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
        ({"forest_mask": {"file": {"threshold": 120}}},
         "config key 'forest_mask.file.threshold': 120 is greater than the maximum of 100"),
        ({"forest_mask": {"file": {"threshold": -1}}}, "config key 'forest_mask.file.threshold'"),
        ({"forest_mask": {"rule": {"ndvi_min": 1.5}}}, "config key 'forest_mask.rule.ndvi_min'"),
        ({"forest_mask": {"rule": {"ndvi_min": -1.1}}}, "config key 'forest_mask.rule.ndvi_min'"),
        ({"forest_mask": {"rule": {"swir_max": -0.1}}}, "config key 'forest_mask.rule.swir_max'"),
        ({"forest_mask": {"rule": {"swir_max": 12}}}, "config key 'forest_mask.rule.swir_max'"),
        ({"forest_mask": {"rule": {"swir_max": "0.1"}}},
         "config key 'forest_mask.rule.swir_max': '0.1' is not of type 'number'"),
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
        ({"synthetic": {"disturbance_start": "2021-09-01"}},
         ["'synthetic.start' (2021-10-01) must be before 'synthetic.disturbance_start' (2021-09-01)"]),
        ({"synthetic": {"disturbance_start": "2024-10-01"}},
         ["'synthetic.disturbance_start' (2024-10-01) must be before 'synthetic.end' (2024-09-30)"]),
        ({"history": {"start": "2021-01-01"}},
         ["'history.start' (2021-01-01) is outside the synthetic archive",
          "'synthetic.start' (2021-10-01)", "move 'history.start'"]),
        ({"history": {"start": "2025-01-01", "end": "2025-06-30"}, "fast_forward": {"until": "2025-12-31"}},
         ["'history.start' (2025-01-01) is outside the synthetic archive"]),
        ({"fast_forward": {"until": "2024-12-31"}},
         ["'fast_forward.until' (2024-12-31) is outside", "'synthetic.end' (2024-09-30)",
          "move 'fast_forward.until'"]),
        ({"grid": {"tile_size": 300}},
         ["'grid.tile_size' (300) is 15 pixels of 'grid.resolution' (20) a side",
          "at least 16 pixels (320)", "multiply the number of jobs"]),
    ],
)
def test_semantic_errors_say_what_to_do(cfg, fragments):
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_dates_and_tiles_at_the_limits_pass(tmp_path):
    cfg = validate_config({"grid": {"tile_size": 320},
                           "history": {"start": "2021-10-01"}, "fast_forward": {"until": "2024-09-30"}})
    assert cfg["grid"]["tile_size"] == 320
    # outside the synthetic archive's dates is fine for other sources
    catalog = tmp_path / "items.json"
    catalog.write_text("{}")
    validate_config({"stac": {"source": "local", "catalog": str(catalog)},
                     "history": {"start": "2015-01-01"}, "fast_forward": {"until": "2025-12-31"}})


def test_forest_mask_values_at_the_limits_pass():
    validate_config({"forest_mask": {"file": {"threshold": 100}, "rule": {"ndvi_min": -1, "swir_max": 1}}})
    validate_config({"forest_mask": {"file": {"threshold": 0}, "rule": {"ndvi_min": 1, "swir_max": 0}}})


def test_missing_files_are_named(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="'stac.catalog' points to .*nope.json.*does not exist"):
        validate_config({"stac": {"source": "local", "catalog": missing}})
    with pytest.raises(ConfigError, match="'aoi.file' points to .*nope.gpkg.*does not exist"):
        validate_config({"aoi": {"file": str(tmp_path / "nope.gpkg")}})
    with pytest.raises(ConfigError, match="'alerts.regions.path' points to .*nope.gpkg"):
        validate_config({"alerts": {"regions": {"path": str(tmp_path / "nope.gpkg")}}})
    with pytest.raises(ConfigError, match="alerts.*min_mapping_unit_ha"):
        validate_config({"alerts": {"min_mapping_unit_ha": -1}})
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


@pytest.mark.parametrize(
    "monitor, fragment",
    [
        ({"class": "IQR", "params": {"sensitivity": -1}},
         "config key 'monitor.params.sensitivity' is -1; it must be a number > 0."),
        ({"class": "IQR", "params": {"sensitivity": 0}}, "'monitor.params.sensitivity' is 0;"),
        ({"class": "IQR", "params": {"sensitivity": "2"}},
         "'monitor.params.sensitivity' is '2', a string; it must be a number > 0."),
        ({"class": "IQR", "params": {"sensitivity": True}},
         "'monitor.params.sensitivity' is True; it must be a number"),
        ({"class": "IQR", "params": {"sensitivity": None}},
         "'monitor.params.sensitivity' is None; it must be a number"),
        ({"class": "CuSum", "params": {"sensitivity": 1.5}},
         "'monitor.params.sensitivity' is 1.5; it must be a number in (0, 1)"),
        ({"class": "MoSum", "params": {"sensitivity": 0.1}},
         "'monitor.params.sensitivity' is 0.1; it must be a number in [0.001, 0.05]"),
        ({"class": "IQR", "params": {"boundary": 0}},
         "'monitor.params.boundary' is 0; it must be an integer >= 1"),
        ({"class": "CCDC", "params": {"boundary": 2.5}}, "'monitor.params.boundary' is 2.5; it must be an integer"),
        ({"class": "IQR", "params": {"harmonic_order": -1}},
         "'monitor.params.harmonic_order' is -1; it must be an integer >= 0."),
        ({"class": "EWMA", "params": {"harmonic_order": 2.0}}, "'monitor.params.harmonic_order' is 2.0;"),
        ({"class": "IQR", "params": {"trend": "yes"}},
         "'monitor.params.trend' is 'yes', a string; it must be true or false."),
        ({"class": "IQR", "params": {"update_mask": 1}}, "'monitor.params.update_mask' is 1; it must be true or false."),
        ({"class": "IQR", "params": {"save_fit_start": "no"}}, "'monitor.params.save_fit_start'"),
        ({"class": "EWMA", "params": {"lambda_": 0}}, "'monitor.params.lambda_' is 0; it must be a number in (0, 1]"),
        ({"class": "EWMA", "params": {"lambda_": 1.2}}, "'monitor.params.lambda_' is 1.2;"),
        ({"class": "EWMA", "params": {"threshold_outlier": 0}},
         "'monitor.params.threshold_outlier' is 0; it must be a number > 0"),
        ({"class": "MoSum", "params": {"h": 0.3}}, "'monitor.params.h' is 0.3; it must be a number in {0.25, 0.5, 1}"),
        ({"class": "MoSum", "params": {"h": 1.0}}, "1, not 1.0"),
        ({"class": "CuSum", "fit": {"alpha": 1}}, "'monitor.fit.alpha' is 1; it must be a number in (0, 1)"),
        ({"class": "MoSum", "fit": {"alpha": 0}}, "'monitor.fit.alpha' is 0;"),
        ({"class": "IQR", "fit": {"method": "RIRLS", "maxiter": 0}},
         "'monitor.fit.maxiter' is 0; it must be an integer >= 1."),
        ({"class": "IQR", "fit": {"method": "RIRLS", "maxiter": "5"}}, "'monitor.fit.maxiter' is '5', a string;"),
        ({"class": "EWMA", "fit": {"L": -3}}, "'monitor.fit.L' is -3; it must be a number > 0"),
        ({"class": "CCDC", "fit": {"scaling_factor": 0}}, "'monitor.fit.scaling_factor' is 0; it must be a number > 0."),
    ],
)
def test_monitor_values_are_checked_for_sense(monitor, fragment):
    with pytest.raises(ConfigError) as err:
        validate_config({"monitor": monitor})
    assert fragment in str(err.value)


def test_every_nrt_argument_has_a_value_rule():
    """A parameter a newer nrt adds must get its type and range in MONITOR_VALUES."""
    from forestwatch.config import (
        FIT_KWARGS,
        MONITOR_CLASSES,
        MONITOR_VALUES,
        RESERVED_PARAMS,
        monitor_init_params,
    )

    for cls in MONITOR_CLASSES:
        names = (set(monitor_init_params(cls)) - RESERVED_PARAMS) | FIT_KWARGS[cls]
        missing = names - {"method", "screen_outliers"} - set(MONITOR_VALUES)
        assert not missing, (cls, missing)


def test_every_monitor_class_accepts_its_own_parameters():
    for monitor in (
        {"class": "EWMA", "params": {"lambda_": 0.2, "threshold_outlier": 6}, "fit": {"method": "OLS"}},
        {"class": "CuSum", "params": {"sensitivity": 0.1}, "fit": {"method": "ROC", "alpha": 0.1}},
        {"class": "MoSum", "params": {"h": 0.5, "trend": False}, "fit": {"method": "ROC"}},
        {"class": "CCDC", "params": {"sensitivity": 2.5}, "fit": {"method": "CCDC-stable", "screen_outliers": None}},
        {"class": "IQR", "params": {"save_fit_start": True, "update_mask": True}, "fit": {"method": "RIRLS", "maxiter": 5}},
        {"class": "IQR", "params": {"harmonic_order": 0, "sensitivity": 1, "boundary": 1}, "fit": {"method": "OLS"}},
        {"class": "EWMA", "params": {"lambda_": 1}, "fit": {"method": "OLS", "L": 3.5}},
        {"class": "CuSum", "params": {"sensitivity": 0.999}, "fit": {"method": "ROC", "alpha": 0.001}},
        {"class": "MoSum", "params": {"h": 1, "sensitivity": 0.001}, "fit": {"method": "ROC"}},
        {"class": "MoSum", "params": {"h": 0.25, "sensitivity": 0.05}, "fit": {"method": "ROC"}},
        {"class": "CCDC", "params": {"trend": True}, "fit": {"method": "CCDC-stable", "scaling_factor": 10000}},
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
