"""Train the demo's tree-cover model on the synthetic archive and export it to ONNX.

Makes ``resources/models/tree_cover_synthetic.onnx`` and its description
``tree_cover_synthetic.json`` (``forest_mask.method: model``; see
resources/models/README.md). The features are the workflow's own
(:func:`forestwatch.forest_mask.model.temporal_features` on
:func:`forestwatch.stac.load_reflectance`), so training and inference see the same
numbers.

* Data: the default config's synthetic archive (``resources/synthetic/``; make it with
  ``snakemake --cores 2 resources/synthetic/items.json``), one year of clear observations:
  the year that ends with ``history.end`` (2022-10-01 .. 2023-09-30).
* Training pixels: the archive's area **outside** the demo's 4 tiles (the margin of the
  truth grid around the AOI), so that the demo's tiles are never seen in training.
  Target: the archive's tree cover (``truth/tree_cover.tif``, percent) warped onto the grid
  (average).
* Checks (printed): on the 4 demo tiles (unseen place), and on the same tiles in the year
  before (unseen place and year): mean absolute error of the tree cover and agreement of
  ``tree cover >= 20 %`` with ``truth/forest.tif``.

    python models/train_tree_cover.py                 # writes resources/models/
    python models/train_tree_cover.py --out /tmp/m    # elsewhere

Needs the ``model`` extra (``pip install -e ".[model]"``: scikit-learn, skl2onnx). Same
archive and package versions, same model bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BANDS = ("red", "nir", "swir16", "swir22")
STATISTICS = ("median", "p10", "p90")
MIN_OBSERVATIONS = 3
THRESHOLD = 20
NAME = "tree_cover_synthetic"


def _truth_on(geobox, archive: Path, layer: str, resampling: str) -> np.ndarray:
    """A truth raster warped onto ``geobox``, float32, NaN outside it."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    out = np.full(geobox.shape, np.nan, dtype=np.float32)
    with rasterio.open(archive / "truth" / f"{layer}.tif") as src:
        reproject(rasterio.band(src, 1), out, src_nodata=src.nodata, dst_nodata=np.nan,
                  dst_transform=geobox.transform, dst_crs=geobox.crs,
                  resampling=Resampling[resampling])
    return out


def _region(cfg: dict, geobox, catalog: Path, start: dt.date, end: dt.date):
    """(features, tree cover, forest truth) of the pixels of ``geobox`` with enough clear
    observations in ``start``..``end``."""
    from forestwatch.forest_mask.model import temporal_features
    from forestwatch.stac import load_reflectance, search_items

    bbox = tuple(geobox.geographic_extent.boundingbox)
    items = search_items(cfg["stac"], bbox, start, end, catalog)
    cube = load_reflectance(items, geobox, BANDS, cfg["stac"], threads=2)
    features, n_obs = temporal_features(cube, bands=BANDS, statistics=STATISTICS)
    archive = catalog.parent
    cover = _truth_on(geobox, archive, "tree_cover", "average").ravel()
    forest = _truth_on(geobox, archive, "forest", "nearest").ravel()
    ok = (n_obs >= MIN_OBSERVATIONS) & np.isfinite(cover) & np.isfinite(forest)
    return features[ok], cover[ok], forest[ok]


def _margin_boxes(cfg: dict, archive: Path):
    """GeoBoxes of the truth grid's area around the AOI's tiles: four strips."""
    import rasterio
    from affine import Affine
    from odc.geo.geobox import GeoBox

    from forestwatch.grid import make_tiles

    tiles = make_tiles(cfg)
    tx0, ty0 = min(t.bounds[0] for t in tiles), min(t.bounds[1] for t in tiles)
    tx1, ty1 = max(t.bounds[2] for t in tiles), max(t.bounds[3] for t in tiles)
    with rasterio.open(archive / "truth" / "forest.tif") as src:
        gx0, gy0, gx1, gy1 = src.bounds
    res = cfg["grid"]["resolution"]
    strips = [(gx0, gy0, gx1, ty0), (gx0, ty1, gx1, gy1),  # south, north
              (gx0, ty0, tx0, ty1), (tx1, ty0, gx1, ty1)]  # west, east
    return [GeoBox((round((y1 - y0) / res), round((x1 - x0) / res)),
                   Affine(res, 0, x0, 0, -res, y1), cfg["grid"]["crs"])
            for x0, y0, x1, y1 in strips if x1 - x0 >= res and y1 - y0 >= res]


def _score(model, features, cover, forest) -> dict:
    predicted = model.predict(features)
    return {"pixels": len(cover), "mae_percent": float(np.abs(predicted - cover).mean()),
            "bias_percent": float((predicted - cover).mean()),
            "agreement": float(((predicted >= THRESHOLD) == (forest == 1)).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--out", default=str(REPO / "resources" / "models"))
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    import onnx
    import skl2onnx
    import sklearn
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingRegressor

    from forestwatch.config import load_config
    from forestwatch.forest_mask.model import FEATURES_METADATA, model_period
    from forestwatch.grid import make_tiles

    cfg = load_config(args.config)
    catalog = REPO / cfg["synthetic"]["folder"] / "items.json"
    if not catalog.exists():
        raise SystemExit(f"no synthetic archive at {catalog}: run "
                         "`snakemake --cores 2 resources/synthetic/items.json` first.")
    start, end = model_period(cfg)
    before = (start.replace(year=start.year - 1), end.replace(year=end.year - 1))
    t0 = time.perf_counter()

    parts = [_region(cfg, box, catalog, start, end) for box in _margin_boxes(cfg, catalog.parent)]
    features = np.concatenate([p[0] for p in parts])
    cover = np.concatenate([p[1] for p in parts])
    model = GradientBoostingRegressor(n_estimators=60, max_depth=3, learning_rate=0.1,
                                      subsample=0.5, random_state=0)
    model.fit(features, cover)
    names = [f"{b}_{s}" for b in BANDS for s in STATISTICS]

    checks = {"training (margin around the tiles)": _score(model, features, cover,
                                                           np.concatenate([p[2] for p in parts]))}
    for label, (a, b) in ((f"demo tiles, {start}..{end}", (start, end)),
                          (f"demo tiles, {before[0]}..{before[1]}", before)):
        tiles = [_region(cfg, t.geobox, catalog, a, b) for t in make_tiles(cfg)]
        checks[label] = _score(model, *(np.concatenate([t[i] for t in tiles]) for i in range(3)))

    onx = convert_sklearn(model, name=NAME,
                          initial_types=[("features", FloatTensorType([None, len(names)]))],
                          target_opset={"": 15, "ai.onnx.ml": 3})
    onnx.helper.set_model_props(onx, {
        FEATURES_METADATA: ",".join(names),
        "output": "tree cover, percent",
        "trained_on": f"forestwatch synthetic archive (seed {cfg['synthetic']['seed']}), "
                      f"{start}..{end}, margin around the demo tiles",
    })
    data = onx.SerializeToString()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.onnx").write_bytes(data)
    description = {
        "name": NAME,
        "summary": ("Tree cover (percent) from one year of clear-sky Sentinel-2 L2A "
                    "reflectance statistics; gradient-boosted trees trained on the "
                    "forestwatch synthetic archive only (the demo): not for real data. "
                    "Made by models/train_tree_cover.py."),
        "sha256": hashlib.sha256(data).hexdigest(),
        "input": {
            "bands": list(BANDS),
            "scaling": "reflectance",
            "temporal": {"statistics": list(STATISTICS), "days": 365,
                         "min_observations": MIN_OBSERVATIONS},
            "resolution": cfg["grid"]["resolution"],
        },
        "output": {"quantity": "tree_cover", "unit": "percent"},
    }
    (out / f"{NAME}.json").write_text(json.dumps(description, indent=2) + "\n")

    print(f"{NAME}.onnx: {len(data)} bytes, sha256 {description['sha256']}; "
          f"{len(cover)} training pixels; {time.perf_counter() - t0:.0f} s; "
          f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
          f"onnx {onnx.__version__}")
    print("\n| pixels | where | tree cover MAE (points) | mean error (points) | "
          f"tree cover >= {THRESHOLD} % agrees with truth/forest.tif |")
    print("|---:|---|---:|---:|---:|")
    for label, c in checks.items():
        print(f"| {c['pixels']} | {label} | {c['mae_percent']:.1f} | {c['bias_percent']:+.1f} | "
              f"{100 * c['agreement']:.2f} % |")


if __name__ == "__main__":
    main()
