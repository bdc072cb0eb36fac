"""Per-tile report rasters and the mosaic VRTs over all tiles.

Two single-band Cloud-optimised GeoTIFFs per tile (a GeoTIFF cannot mix uint8 and wider
bands, and a palette only makes sense on the class layer):

* ``mask``: uint8 nrt mask classes with a palette and class names, nodata 255;
* ``detection_date``: int32 days since 1970-01-01 of the confirmed break, 0 = none
  (declared nodata, so undisturbed pixels are transparent). int32 never overflows, unlike
  the uint8 of nrt's deploy example, which wraps dates modulo 256.

The mosaic is one VRT per layer, written as XML from the tiles' own metadata so that
relative paths, band names, palette and class names survive (gdalbuildvrt drops them).

:class:`TileReportsIndex` (``reports/index.json``) says which tiles' reports are complete
and where: the rules over every tile depend on it instead of on every tile's files.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from .alerts.layers import ALERT_REPORT_LAYERS
from .io import atomic_path, atomic_paths, write_json

#: nrt mask codes -> (name, RGBA)
MASK_CLASSES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    0: ("not monitored (not forest)", (0, 0, 0, 0)),
    1: ("forest, no break", (26, 150, 65, 255)),
    2: ("unstable history", (253, 174, 97, 255)),
    3: ("confirmed break", (215, 25, 28, 255)),
    4: ("not enough observations", (150, 150, 150, 255)),
}
MASK_NODATA = 255
DATE_NODATA = 0
DATE_UNITS = "days since 1970-01-01"

_COG = dict(driver="COG", compress="DEFLATE", blocksize=256, overviews="AUTO")


@dataclass(frozen=True)
class TileReportsIndex:
    """Which tiles' reports are complete, and where they are: ``reports/index.json``
    (:meth:`forestwatch.layout.RunLayout.reports_index`), written only by
    :meth:`write`, called by rule ``tile_reports_index`` once every tile's
    ``tile_report`` is done (a tile's report is rewritten: so is the index).

    Why a file: the rules over every tile (mosaic, accuracy, alert polygons and
    statistics, STAC catalog, report figures) depend on this one file instead of each
    on every tile's files; with 10,000 tiles those 60,000 dependencies were half of
    Snakemake's plan (BENCHMARKS.md, the 10,000-tile dry-run).
    """

    #: tile id -> its report folder (one COG per layer: :func:`forestwatch.layout.report_layer`)
    folders: dict[str, str]
    #: tile id -> its alert pieces (GeoPackage, :mod:`forestwatch.alerts.polygons`)
    pieces: dict[str, str]

    FORMAT = 1

    def __post_init__(self) -> None:
        if list(self.folders) != list(self.pieces):
            raise ValueError("the index's folders and pieces name different tiles")

    @property
    def tiles(self) -> list[str]:
        return list(self.folders)

    def write(self, path: str | Path) -> None:
        """Write the index to ``path`` (JSON, atomically)."""
        # a list: the tiles keep the workflow's order (JSON objects are written sorted)
        write_json(path, {"format": self.FORMAT,
                          "tiles": [{"tile": t, "folder": self.folders[t],
                                     "pieces": self.pieces[t]} for t in self.folders]})

    @classmethod
    def read(cls, path: str | Path) -> TileReportsIndex:
        try:
            data = json.loads(Path(path).read_text())
            if data.get("format") != cls.FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {cls.FORMAT}")
            tiles = data["tiles"]
            return cls(folders={e["tile"]: e["folder"] for e in tiles},
                       pieces={e["tile"]: e["pieces"] for e in tiles})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"tile reports index {str(path)!r} cannot be read ({err}); "
                             "delete it and run `snakemake` to write it again") from err


def write_tile_reports(mask: np.ndarray, detection_date: np.ndarray | None, crs: str,
                       transform: Affine, mask_path: str | Path, date_path: str | Path) -> None:
    """Write the mask and detection-date COGs of one tile, together
    (:func:`~forestwatch.io.atomic_paths`)."""
    mask = np.asarray(mask).astype(np.uint8)
    if detection_date is None:
        detection_date = np.zeros(mask.shape, dtype=np.int32)
    dates = np.asarray(detection_date).astype(np.int64)
    if dates.min() < 0 or dates.max() > np.iinfo(np.int32).max:
        raise ValueError("detection dates out of range for int32 days since 1970")
    dates = np.where(mask == 3, dates, DATE_NODATA).astype(np.int32)
    base = dict(height=mask.shape[0], width=mask.shape[1], count=1, crs=CRS.from_user_input(crs),
                transform=transform)
    with atomic_paths([mask_path, date_path]) as (mask_tmp, date_tmp):
        with rasterio.open(mask_tmp, "w", dtype="uint8", nodata=MASK_NODATA,
                           overview_resampling="nearest", **_COG, **base) as dst:
            dst.write(mask, 1)
            dst.write_colormap(1, {k: rgba for k, (_, rgba) in MASK_CLASSES.items()})
            dst.set_band_description(1, "mask")
            dst.update_tags(1, **{f"class_{k}": name for k, (name, _) in MASK_CLASSES.items()})
        with rasterio.open(date_tmp, "w", dtype="int32", nodata=DATE_NODATA,
                           overview_resampling="nearest", **_COG, **base) as dst:
            dst.write(dates, 1)
            dst.set_band_description(1, "detection_date")
            dst.update_tags(1, units=DATE_UNITS)


def alert_report_arrays(alerts, *, confidence_half: float) -> dict[str, np.ndarray]:
    """The alert report layers (:data:`~forestwatch.alerts.layers.ALERT_REPORT_LAYERS`)
    of a tile's :class:`~forestwatch.alerts.ladder.AlertLayers`, with their nodata set."""
    from .alerts.ladder import ALERT_STATUSES, CONFIRMED, NO_ALERT, NO_DATA

    status = alerts.status
    none = status == NO_DATA
    open_ = np.isin(status, ALERT_STATUSES)
    episode = ~none & (status != NO_ALERT)
    out = {
        "alert_status": status.astype(np.uint8),
        "first_detection_date": np.where(open_, alerts.first_date, 0),
        "confirmation_date": np.where(status == CONFIRMED, alerts.confirmed_date, 0),
        "last_observation_date": np.where(none, 0, alerts.last_date),
        "anomaly_count": np.where(episode, alerts.count, 0),
        "max_loss": np.where(episode, alerts.max_loss, 0.0),
        "confidence": alerts.confidence(confidence_half=confidence_half),
    }
    for name, layer in ALERT_REPORT_LAYERS.items():
        arr = out[name].astype(layer.dtype)
        if name not in ("alert_status", "first_detection_date", "confirmation_date",
                        "last_observation_date"):
            arr[none] = layer.nodata
        out[name] = arr
    return out


def write_alert_reports(arrays: dict[str, np.ndarray], crs: str, transform: Affine,
                        paths: dict[str, str | Path]) -> None:
    """Write the alert report COGs of one tile, one per entry of ``paths``, together
    (:func:`~forestwatch.io.atomic_paths`: each file atomically, the folder fsynced once);
    the status layer gets its palette and class names."""
    from .alerts.ladder import STATUS_CLASSES

    names = list(paths)
    with atomic_paths([paths[name] for name in names]) as tmps:
        for name, tmp in zip(names, tmps, strict=True):
            layer = ALERT_REPORT_LAYERS[name]
            data = arrays[name]
            profile = dict(height=data.shape[0], width=data.shape[1], count=1,
                           crs=CRS.from_user_input(crs), transform=transform,
                           dtype=layer.dtype, nodata=layer.nodata,
                           overview_resampling="nearest", **_COG)
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(data.astype(layer.dtype), 1)
                dst.set_band_description(1, name)
                tags = {"description": layer.description}
                if layer.units:
                    tags["units"] = layer.units
                if name == "alert_status":
                    dst.write_colormap(1, {k: rgba for k, (_, rgba) in STATUS_CLASSES.items()})
                    tags.update({f"class_{k}": n for k, (n, _) in STATUS_CLASSES.items()})
                dst.update_tags(1, **tags)


def build_vrt(sources: Sequence[str | Path], vrt_path: str | Path) -> None:
    """Mosaic single-band rasters on one grid into a VRT with relative source paths,
    keeping band description, nodata, palette, class names and units of the first source."""
    vrt_path = Path(vrt_path)
    if not sources:
        raise ValueError("no tile rasters to mosaic")
    metas = []
    for src_path in sources:
        with rasterio.open(src_path) as src:
            metas.append({
                "path": Path(src_path), "bounds": src.bounds, "shape": src.shape,
                "res": src.res, "crs": src.crs, "dtype": src.dtypes[0], "nodata": src.nodata,
                "desc": src.descriptions[0], "tags": src.tags(1),
                "colormap": _colormap_or_none(src), "blocks": src.block_shapes[0],
            })
    first = metas[0]
    for m in metas[1:]:
        if m["crs"] != first["crs"] or m["res"] != first["res"] or m["dtype"] != first["dtype"]:
            raise ValueError(f"{m['path']} does not share the first tile's CRS/resolution/type")
    rx, ry = first["res"]
    xmin = min(m["bounds"].left for m in metas)
    ymax = max(m["bounds"].top for m in metas)
    xmax = max(m["bounds"].right for m in metas)
    ymin = min(m["bounds"].bottom for m in metas)
    width, height = round((xmax - xmin) / rx), round((ymax - ymin) / ry)

    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = first["crs"].to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(float(v)) for v in (xmin, rx, 0.0, ymax, 0.0, -ry))
    gdal_type = {"uint8": "Byte", "int16": "Int16", "uint16": "UInt16", "int32": "Int32",
                 "float32": "Float32"}[first["dtype"]]
    band = ET.SubElement(root, "VRTRasterBand", dataType=gdal_type, band="1")
    if first["desc"]:
        ET.SubElement(band, "Description").text = first["desc"]
    if first["nodata"] is not None:
        ET.SubElement(band, "NoDataValue").text = _fmt(first["nodata"])
    if "units" in first["tags"]:
        ET.SubElement(band, "UnitType").text = first["tags"]["units"]
    if first["colormap"]:
        ET.SubElement(band, "ColorInterp").text = "Palette"
        names = [first["tags"].get(f"class_{i}", "") for i in range(max(first["colormap"]) + 1)]
        cats = ET.SubElement(band, "CategoryNames")
        for name in names:
            ET.SubElement(cats, "Category").text = name
        table = ET.SubElement(band, "ColorTable")
        for i in range(max(first["colormap"]) + 1):
            r, g, b, a = first["colormap"].get(i, (0, 0, 0, 0))
            ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(a))
    for m in metas:
        rel = os.path.relpath(m["path"].resolve(), vrt_path.parent.resolve())
        src = ET.SubElement(band, "ComplexSource")
        ET.SubElement(src, "SourceFilename", relativeToVRT="1").text = Path(rel).as_posix()
        ET.SubElement(src, "SourceBand").text = "1"
        h, w = m["shape"]
        bh, bw = m["blocks"]
        ET.SubElement(src, "SourceProperties", RasterXSize=str(w), RasterYSize=str(h),
                      DataType=gdal_type, BlockXSize=str(bw), BlockYSize=str(bh))
        ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
        xoff = round((m["bounds"].left - xmin) / rx)
        yoff = round((ymax - m["bounds"].top) / ry)
        ET.SubElement(src, "DstRect", xOff=str(xoff), yOff=str(yoff), xSize=str(w), ySize=str(h))
        if m["nodata"] is not None:
            ET.SubElement(src, "NODATA").text = _fmt(m["nodata"])
    ET.indent(root)
    with atomic_path(vrt_path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="unicode")


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _colormap_or_none(src) -> dict | None:
    try:
        return src.colormap(1)
    except ValueError:
        return None
