"""The model forest mask (forestwatch.forest_mask.model): a tiny ONNX model built here gives
exactly the mask its formula gives; descriptions that do not match the model, a missing
file and a changed model are refused with messages naming the field; memory is bounded by
the block; the workflow's fit rule with ``method: model`` writes the mask's provenance."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import rasterio
import xarray as xr
import yaml
from conftest import small_config, snakemake
from onnx import TensorProto, helper, numpy_helper
from rasterio.windows import from_bounds

from forestwatch.config import ConfigError
from forestwatch.forest_mask import ModelError, blocks, mask_from_model
from forestwatch.forest_mask.model import (
    DEMO_MODEL,
    ModelDescription,
    OnnxTreeCoverModel,
    load_model,
    model_files,
    temporal_features,
)
from forestwatch.grid import Tile
from forestwatch.layout import RunLayout

RES = 20.0
N_TIME = 12
STAC = small_config()["stac"]


def _tile(size: int) -> Tile:
    """A square tile of ``size`` px at the origin of EPSG:3035 (nothing is read from it)."""
    return Tile(id="X0000_Y0000", col=0, row=0, bounds=(0.0, 0.0, size * RES, size * RES),
                crs="EPSG:3035", resolution=RES)


def _tiny_model(folder: Path, *, bands=("red", "nir"), features_meta=True,
                sha256: str | None = None, min_observations: int = 3) -> tuple[Path, Path]:
    """A linear ONNX model, tree cover = 100 * (nir_median - red_median) percent, and its
    description (``bands`` in the description's order, which may be wrong on purpose)."""
    weights = np.array([[-100.0], [100.0]], dtype=np.float32)  # red, nir
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["cover"])], "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("cover", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    if features_meta:
        helper.set_model_props(model, {"features": "red_median,nir_median"})
    onnx.checker.check_model(model)
    path = folder / "tiny.onnx"
    path.write_bytes(model.SerializeToString())
    description = {
        "name": "tiny",
        "sha256": sha256 or hashlib.sha256(path.read_bytes()).hexdigest(),
        "input": {"bands": list(bands), "scaling": "reflectance",
                  "temporal": {"statistics": ["median"], "days": 365,
                               "min_observations": min_observations},
                  "resolution": RES},
        "output": {"quantity": "tree_cover", "unit": "percent"},
    }
    desc = folder / "tiny.json"
    desc.write_text(json.dumps(description))
    return path, desc


def _nir(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The synthetic scene's nir reflectance at tile pixel (row, col): 0.12 ... 0.57."""
    return (0.12 + 0.05 * ((7 * rows + 3 * cols) % 10)).astype(np.float32)


RED = np.float32(0.05)
# forest where 100 * (nir - red) >= 20, i.e. nir >= 0.25: k = (7r + 3c) % 10 >= 3


def _loader(tile: Tile, calls: list | None = None):
    """A stand-in for load_reflectance: the block's cube of the synthetic scene, built from
    the block's geobox alone (no tile-sized array anywhere). Values are constant in time
    with clouds (NaN) on a few dates; pixel row 0, col 2 is never clear and pixel (0, 1)
    twice only (below min_observations): both would be forest by the formula."""

    def load(items, geobox, bands, stac_cfg, *, threads=1):
        col0 = round((geobox.transform.c - tile.bounds[0]) / RES)
        row0 = round((tile.bounds[3] - geobox.transform.f) / RES)
        ny, nx = geobox.shape
        rows, cols = np.meshgrid(np.arange(row0, row0 + ny), np.arange(col0, col0 + nx),
                                 indexing="ij")
        cloudy = (np.arange(N_TIME)[:, None, None] + rows + cols) % 4 == 0  # 1 date in 4
        cloudy[:, (rows == 0) & (cols == 2)] = True
        cloudy[2:, (rows == 0) & (cols == 1)] = True
        values = {"nir": np.broadcast_to(_nir(rows, cols), (N_TIME, ny, nx)),
                  "red": np.full((N_TIME, ny, nx), RED)}
        if calls is not None:
            calls.append(tuple(geobox.shape))
        time = pd.date_range("2022-10-05", periods=N_TIME, freq="30D")
        return xr.Dataset({b: (("time", "y", "x"), np.where(cloudy, np.nan, values[b]))
                           for b in bands}, coords={"time": time})

    return load


def _expected_mask(size: int) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    expected = (100 * (_nir(rows, cols) - RED) >= 20).astype(np.uint8)
    assert expected[0, 1] == expected[0, 2] == 1  # by the formula, but:
    expected[0, 1] = expected[0, 2] = 0  # too few clear observations; never clear
    return expected


# --------------------------------------------------------------------------- inference


def test_tiny_model_gives_the_expected_mask(tmp_path):
    path, desc = _tiny_model(tmp_path)
    model = OnnxTreeCoverModel.load(path, desc, threads=1)
    tile, calls = _tile(40), []
    mask = mask_from_model(tile, ["one item"], model=model, threshold=20, stac_cfg=STAC,
                           block_size=16, loader=_loader(tile, calls))
    assert mask.dtype == np.uint8 and mask.shape == tile.shape
    expected = _expected_mask(40)
    assert 0.5 < expected.mean() < 0.9
    assert np.array_equal(mask, expected)
    assert len(calls) == 9 and max(calls) == (16, 16)  # 3 x 3 blocks, the last ones smaller
    assert model.provenance() == {"backend": "onnx", "model": "tiny.onnx",
                                  "model_sha256": model.description.sha256,
                                  "model_description": "tiny.json"}


def test_threshold_moves_the_mask(tmp_path):
    path, desc = _tiny_model(tmp_path)
    model = OnnxTreeCoverModel.load(path, desc)
    tile = _tile(20)
    high = mask_from_model(tile, ["x"], model=model, threshold=45, stac_cfg=STAC,
                           block_size=64, loader=_loader(tile))
    rows, cols = np.meshgrid(np.arange(20), np.arange(20), indexing="ij")
    expected = (100 * (_nir(rows, cols) - RED) >= 45) & ~((rows == 0) & np.isin(cols, [1, 2]))
    assert np.array_equal(high, expected.astype(np.uint8))


def test_temporal_features_are_nan_aware_statistics():
    values = np.array([[0.1, np.nan, 0.3, 0.5], [np.nan] * 4], dtype=np.float32).T
    cube = xr.Dataset({"red": (("time", "y", "x"), values.reshape(4, 1, 2))})
    features, n = temporal_features(cube, bands=["red"], statistics=["median", "mean", "p0",
                                                                     "p100"])
    assert n.tolist() == [3, 0]
    np.testing.assert_allclose(features[0], [0.3, 0.3, 0.1, 0.5], rtol=1e-6)
    assert np.isnan(features[1]).all()


# --------------------------------------------------------------------------- refusals


def test_wrong_band_order_in_the_description_is_refused(tmp_path):
    path, desc = _tiny_model(tmp_path, bands=("nir", "red"))
    with pytest.raises(ModelError, match=r"made for the features red_median, nir_median.*"
                                         r"order.*input\.bands"):
        OnnxTreeCoverModel.load(path, desc)


def test_missing_band_in_the_description_is_refused(tmp_path):
    path, desc = _tiny_model(tmp_path, bands=("nir",), features_meta=False)
    with pytest.raises(ModelError, match=r"takes 2 features per pixel.*1 band\(s\).*"
                                         r"input\.bands"):
        OnnxTreeCoverModel.load(path, desc)


def test_unknown_band_in_the_description_is_refused(tmp_path):
    _, desc = _tiny_model(tmp_path, bands=("red", "nirr"))
    with pytest.raises(ModelError, match=r"input\.bands names 'nirr'.*known bands"):
        ModelDescription.read(desc)


def test_description_without_a_required_field_is_refused(tmp_path):
    _, desc = _tiny_model(tmp_path)
    data = json.loads(desc.read_text())
    del data["input"]["temporal"]
    desc.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"'temporal' is a required property in 'input'"):
        ModelDescription.read(desc)


def test_checksum_mismatch_is_refused(tmp_path):
    path, desc = _tiny_model(tmp_path, sha256="0" * 64)
    with pytest.raises(ModelError, match=r"tiny\.onnx.*has SHA-256 [0-9a-f]{64}.*states 0{64}"):
        OnnxTreeCoverModel.load(path, desc)


def test_missing_model_file_is_refused_naming_the_key(tmp_path):
    cfg = {"path": str(tmp_path / "absent.onnx"), "description": None}
    with pytest.raises(ModelError, match=r"'forest_mask\.model\.path'.*absent\.onnx.*"
                                         "does not exist"):
        model_files(cfg, source="synthetic")
    path, _ = _tiny_model(tmp_path)
    with pytest.raises(ModelError, match=r"'forest_mask\.model\.description'.*does not exist"):
        model_files({"path": str(path), "description": str(tmp_path / "no.json")},
                    source="synthetic")


def test_model_file_without_description_is_refused(tmp_path):
    path, desc = _tiny_model(tmp_path)
    desc.unlink()
    with pytest.raises(ModelError, match=r"no description file.*tiny\.json"):
        model_files({"path": str(path), "description": None}, source="synthetic")


def test_config_refuses_a_missing_model_and_another_resolution(tmp_path):
    with pytest.raises(ConfigError, match=r"'forest_mask\.model\.path'.*does not exist"):
        small_config(forest_mask={"method": "model",
                                  "model": {"path": str(tmp_path / "absent.onnx")}})
    path, _ = _tiny_model(tmp_path)
    with pytest.raises(ConfigError, match=r"'grid\.resolution' is 10 m.*made at 20 m"):
        small_config(grid={"resolution": 10},
                     forest_mask={"method": "model", "model": {"path": str(path)}})


def test_xinfereo_backend_says_how_to_install_it_or_use_onnx():
    with pytest.raises(ConfigError, match=r"xinfereo package is not installed.*pip install "
                                          r"xinfereo.*backend: onnx"):
        small_config(forest_mask={"method": "model", "model": {"backend": "xinfereo"}})
    with pytest.raises(ModelError, match="xinfereo"):
        load_model({"backend": "xinfereo", "name": "tcd_onnx_v0.2"}, model_path=None,
                   description_path=None, stac_cfg=STAC)


def test_the_demo_model_matches_its_description():
    path, desc = model_files({"path": None, "description": None}, source="synthetic")
    assert path == DEMO_MODEL and path.stat().st_size < 1_000_000
    model = OnnxTreeCoverModel.load(path, desc)
    assert model.description.resolution == 20 and model.description.days == 365


def test_importing_the_package_does_not_import_onnxruntime():
    """The Snakefile imports forestwatch.forest_mask.model on every parse."""
    code = ("import sys, forestwatch.forest_mask, forestwatch.forest_mask.model, "
            "forestwatch.config, forestwatch.steps; "
            "print(sorted(m for m in ('onnxruntime', 'onnx', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- memory


def _peak_bytes(size: int, model) -> tuple[int, int]:
    """(tracemalloc peak of a model mask over a ``size`` px tile in blocks of 32 px, the
    most pixels the model was given at once)."""
    tile = _tile(size)
    given = []
    predict = model.predict

    def recording(features):
        given.append(len(features))
        return predict(features)

    model.predict = recording
    mask_from_model(tile, ["x"], model=model, threshold=20, stac_cfg=STAC, block_size=32,
                    loader=_loader(tile))  # warm-up (first-call allocations)
    tracemalloc.start()
    try:
        mask_from_model(tile, ["x"], model=model, threshold=20, stac_cfg=STAC, block_size=32,
                        loader=_loader(tile))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        del model.predict
    return peak, max(given)


def test_inference_memory_does_not_grow_with_the_tile(tmp_path):
    path, desc = _tiny_model(tmp_path)
    model = OnnxTreeCoverModel.load(path, desc)
    small, small_rows = _peak_bytes(64, model)
    large, large_rows = _peak_bytes(256, model)  # 16 x the pixels
    assert small_rows <= 32 * 32 and large_rows <= 32 * 32
    # only the uint8 mask itself (64 kB at 256 px) grows with the tile
    assert large - small < 256 * 256 * 2
    assert large < 1.5 * small, (small, large)
    # the blocks tile the tile once
    assert sum((r.stop - r.start) * (c.stop - c.start)
               for r, c in blocks((256, 250), size=32)) == 256 * 250


# --------------------------------------------------------------------------- workflow


def _truth_on(path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(mask_path) as m, rasterio.open(path) as t:
        window = from_bounds(*m.bounds, transform=t.transform)
        return m.read(1), t.read(1, window=window)


@pytest.mark.workflow
def test_workflow_model_mask_records_its_provenance(tmp_path):
    run = RunLayout("results/small")
    tile = "X3718_Y2537"
    override = tmp_path / "model.yaml"
    override.write_text(yaml.safe_dump({"forest_mask": {"method": "model",
                                                        "model": {"threshold": 25}}}))
    snakemake(tmp_path, run.forest_mask(tile), configfiles=(override,))
    mask_path = tmp_path / run.forest_mask(tile)
    with rasterio.open(mask_path) as src:
        tags = src.tags(1)
    description = ModelDescription.read(DEMO_MODEL.with_suffix(".json"))
    assert tags["method"] == "model" and tags["backend"] == "onnx"
    assert tags["model"] == "tree_cover_synthetic.onnx"
    assert tags["model_sha256"] == description.sha256
    assert tags["threshold"] == "25" and tags["period"] == "2021-10-01/2022-09-30"
    # the demo model never saw the small archive's place: it still finds its forest
    mask, truth = _truth_on(tmp_path / "resources/synthetic_small/truth/forest.tif", mask_path)
    assert (mask == truth).mean() >= 0.95
    # the same config plans nothing; another threshold reruns the mask
    proc = snakemake(tmp_path, "-n", run.forest_mask(tile), configfiles=(override,))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    override.write_text(yaml.safe_dump({"forest_mask": {"method": "model"}}))
    proc = snakemake(tmp_path, "-n", run.forest_mask(tile), configfiles=(override,))
    assert re.search(r"^tile_state\s+1\s*$", proc.stdout, re.M), proc.stdout
