"""The reference document's recipe, as a user would run it: its fit and fast-forward
snippets for one area in one piece, with their defects fixed so that it computes what the
workflow computes (benchmarks/chain.py times it beside the workflow).

What is the document's: one ``pystac_client`` search per period, one eager
``odc.stac.load`` of the whole area grouped by solar day, the index from the loaded cube,
``nrt``'s monitor fitted on the history and fed one date at a time, a report and the state
written at the end. What is fixed: the DN offset is applied per processing baseline (not
-1000 for every item), a re-published acquisition is loaded once (its newest version), the
index, monitor parameters and fit method are the workflow's, and the report keeps int32
dates and the grid's CRS. The workflow's regional screen and alert ladder are not part
of it (they cost ~0.04 + 0.1 s per acquisition per million pixels, BENCHMARKS.md).

    python benchmarks/reference_recipe.py --spec spec.json --out folder

``spec.json`` (written by benchmarks/chain.py): ``url``, ``collection``, ``bounds``,
``crs``, ``resolution``, ``history`` [start, end], ``until``, ``bands`` (logical name ->
asset key; ``scl`` among them), ``index``, ``params``, ``fit``, ``valid_scl``,
``max_cloud_cover``, ``tree_cover``, ``threshold``, ``threads`` (odc-stac's pool).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

INDEX_BANDS = {"NDVI": ("red", "nir"), "NBR": ("nir", "swir22"), "NDMI": ("nir", "swir16")}


def odc_stac():
    """The ``odc.stac`` module, which only the benchmarks use (``pip install -e ".[bench]"``);
    a clear exit without it."""
    try:
        import odc.stac
    except ImportError:
        raise SystemExit("this benchmark compares with odc-stac's loader, which the workflow "
                         "does not use: install it with pip install -e \".[bench]\"") from None
    return odc.stac


def _offset(item) -> float:
    """DN offset of an item: -1000 from processing baseline 04.00 on (the fixed defect)."""
    baseline = str(item.properties.get("s2:processing_baseline", "04.00"))
    return -1000.0 if tuple(int(p) for p in baseline.split(".")) >= (4, 0) else 0.0


def _newest(items):
    """One item per acquisition (tile, sensing time): the newest processing baseline."""
    keep = {}
    for it in items:
        key = (it.properties.get("s2:mgrs_tile"), it.datetime)
        if key not in keep or (it.properties.get("s2:processing_baseline", "")
                               > keep[key].properties.get("s2:processing_baseline", "")):
            keep[key] = it
    return list(keep.values())


def load_index(items, spec, geobox):
    """The index cube (time, y, x) of ``items``: loaded per offset group, masked by SCL."""
    stac_loader = odc_stac()
    import xarray as xr

    a, b = INDEX_BANDS[spec["index"]]
    keys = spec["bands"]
    parts = []
    for offset in sorted({_offset(it) for it in items}):
        group = [it for it in items if _offset(it) == offset]
        ds = stac_loader.load(group, bands=[keys[a], keys[b], keys["scl"]], geobox=geobox,
                           groupby="solar_day", pool=spec["threads"],
                           resampling={keys[a]: "cubic", keys[b]: "cubic",
                                       keys["scl"]: "nearest"})
        ok = ds[keys["scl"]].isin(spec["valid_scl"]) & (ds[keys[a]] != 0) & (ds[keys[b]] != 0)
        va = ds[keys[a]].astype("float32") + offset
        vb = ds[keys[b]].astype("float32") + offset
        index = ((va - vb) / (va + vb)).where(ok)
        parts.append(index.where(np.isfinite(index)))
    index = parts[0] if len(parts) == 1 else xr.concat(parts, "time").groupby("time").first()
    return index.sortby("time").compute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    import rasterio
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from pystac_client import Client
    from rasterio.warp import Resampling, reproject

    from forestwatch.config import monitor_class  # nrt's class by name (IQR, CCDC, ...)

    spec = json.loads(Path(args.spec).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xmin, ymin, xmax, ymax = spec["bounds"]
    res = spec["resolution"]
    shape = (round((ymax - ymin) / res), round((xmax - xmin) / res))
    transform = Affine(res, 0, xmin, 0, -res, ymax)
    geobox = GeoBox(shape, transform, spec["crs"])
    bbox = list(geobox.geographic_extent.boundingbox)
    timings = {"imports": time.perf_counter() - t0}

    # the forest mask the workflow also uses: the tree-cover raster, warped and thresholded
    with rasterio.open(spec["tree_cover"]) as src:
        cover = np.full(shape, np.nan, dtype=np.float32)
        reproject(rasterio.band(src, 1), cover, src_nodata=src.nodata, dst_nodata=np.nan,
                  dst_transform=transform, dst_crs=spec["crs"], resampling=Resampling.average)
    mask = np.where(np.isfinite(cover) & (cover >= spec["threshold"]), 1, 0).astype(np.uint8)

    client = Client.open(spec["url"])

    def search(start, end):
        t = time.perf_counter()
        items = list(client.search(collections=[spec["collection"]], bbox=bbox,
                                   datetime=f"{start}/{end}",
                                   query={"eo:cloud_cover": {"lt": spec["max_cloud_cover"]}})
                     .items())
        timings["search"] = timings.get("search", 0) + time.perf_counter() - t
        return _newest(items)

    # fit
    t = time.perf_counter()
    history = search(*spec["history"])
    index = load_index(history, spec, geobox)
    timings["fit load"] = time.perf_counter() - t
    t = time.perf_counter()
    model = monitor_class(spec["monitor_class"])(mask=mask, **spec["params"])
    model.fit(index.copy(data=np.ascontiguousarray(index.values)), **spec["fit"])
    model.to_netcdf(str(out / "fitted_state.nc"))
    timings["fit"] = time.perf_counter() - t

    # fast forward
    t = time.perf_counter()
    later = search(spec["history"][1] + "T23:59:59Z", spec["until"] + "T23:59:59Z")
    later = [it for it in later if str(it.datetime.date()) > spec["history"][1]]
    index = load_index(later, spec, geobox)
    timings["forward load"] = time.perf_counter() - t
    t = time.perf_counter()
    dates = index.time.values.astype("M8[s]").astype(object)
    for i, date in enumerate(dates):
        array = np.ascontiguousarray(index.values[i])
        if not np.isnan(array).all():
            model.monitor(array=array, date=date)
    model.report(str(out / "report.tif"), layers=["mask", "detection_date"], dtype=np.int32,
                 crs=rasterio.crs.CRS.from_user_input(spec["crs"]))
    model.to_netcdf(str(out / "current_state.nc"))
    timings["forward"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    timings["items"] = len(history) + len(later)
    timings["dates"] = [int(len(dates))]
    (out / "timings.json").write_text(json.dumps(timings, default=str))
    print(json.dumps(timings, default=str))


if __name__ == "__main__":
    main()
