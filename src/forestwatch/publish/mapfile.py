"""The MapServer mapfile of a run's WMS (``publish/wms.map``, written by rule
``wms_mapfile``, atomically).

Every raster layer points at its mosaic VRT by a path relative to the mapfile, so a daily
run that rewrites tiles shows through on the next request (``mapserv`` reads the files per
request; nothing to restart), and the run folder can be moved or mounted elsewhere
(Docker). The layers come from :data:`forestwatch.publish.layers.LAYERS`: one CLASS per
class code (a legend with the class names; the colours read from the raster's palette),
per month bin of a date layer (a dated legend) or per value bin; nodata and fully
transparent classes are not drawn. Every layer has a ``TEMPLATE``, which MapServer needs
to answer GetFeatureInfo (the pixel's value, and its class or bin name).

The WMS offers the grid CRS, EPSG:3857 and EPSG:4326 (reprojected on the fly).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

from ..io import atomic_path
from .layers import Layer, LegendEntry, legend_entries, raster_classes

#: the CRSs every layer is offered in, besides the grid's
WMS_CRS = ("EPSG:3857", "EPSG:4326")


def _q(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _projection(crs: str) -> str:
    code = crs.split(":")[-1]
    return f'    PROJECTION\n      "init=epsg:{code}"\n    END'


def _expression(entry: LegendEntry, item: str) -> str:
    if entry.hi is not None and entry.lo == entry.hi:
        return f"([{item}] = {entry.lo:g})"
    if entry.hi is None:
        return f"([{item}] >= {entry.lo:g})"
    return f"([{item}] >= {entry.lo:g} AND [{item}] <= {entry.hi:.9g})"


def _classes(entries: Sequence[LegendEntry], item: str, *, polygon: bool = False) -> list[str]:
    out = []
    for e in entries:
        if e.rgba[3] == 0:
            continue
        r, g, b, a = e.rgba
        style = [f"        COLOR {r} {g} {b}"]
        if a < 255:
            style.append(f"        OPACITY {round(a / 2.55)}")
        if polygon:
            style.append("        OUTLINECOLOR 40 40 40")
        out += ["    CLASS", f"      NAME {_q(e.name)}", f"      EXPRESSION {_expression(e, item)}",
                "      STYLE", *style, "      END", "    END"]
    return out


def _layer_block(entry: Layer, data: str, *, crs: str, srs: str, extent: Sequence[float],
                 entries: Sequence[LegendEntry]) -> list[str]:
    meta = [f'      "wms_title" {_q(entry.title)}', f'      "wms_srs" {_q(srs)}',
            f'      "wms_extent" "{" ".join(f"{v:.3f}" for v in extent)}"',
            '      "wms_include_items" "all"', '      "gml_include_items" "all"']
    if entry.units:
        meta.append(f'      "wms_abstract" {_q("values in " + entry.units)}')
    lines = ["  LAYER", f"    NAME {_q(entry.name)}", "    STATUS ON", "    TEMPLATE \"query\"",
             _projection(crs)]
    if entry.kind == "polygons":
        lines += ["    TYPE POLYGON", "    CONNECTIONTYPE OGR", f"    CONNECTION {_q(data)}",
                  f"    DATA {_q(entry.ogr_layer)}", "    TOLERANCE 0", "    TOLERANCEUNITS PIXELS"]
        classes = _classes(entries, entry.field, polygon=True)
    else:
        lines += ["    TYPE RASTER", f"    DATA {_q(data)}", '    PROCESSING "BANDS=1"',
                  '    PROCESSING "RESAMPLE=NEAREST"', "    TOLERANCE 0",
                  "    TOLERANCEUNITS PIXELS"]
        if entry.nodata is not None:
            lines.append(f'    PROCESSING "NODATA={entry.nodata}"')
        classes = _classes(entries, "pixel")
    lines += ["    METADATA", *meta, "    END", *classes, "  END"]
    return lines


def write_mapfile(*, out: str | Path, layers: Sequence[tuple[Layer, str | Path]], crs: str,
                  monitoring: tuple[dt.date, dt.date], name: str, title: str) -> list[str]:
    """Write the mapfile ``out`` for ``layers`` ((table entry, file) pairs), whose rasters are on ``crs`` (the grid CRS);
    ``monitoring`` is the (first, last) day of monitoring for the date bins. Returns the
    layer names written. The map extent is the union of the rasters' bounds, in metres of
    ``crs``."""
    import rasterio

    out = Path(out)
    srs = " ".join(dict.fromkeys([crs.upper(), *WMS_CRS]))
    bounds = []
    classes_of = {}
    for entry, path in layers:
        if entry.kind != "polygons":
            with rasterio.open(path) as src:
                bounds.append(tuple(src.bounds))
            if entry.kind == "classes":
                classes_of[entry.name] = raster_classes(path, entry.classes, entry.transparent)
    if not bounds:
        raise ValueError("no raster layer to publish")
    extent = (min(b[0] for b in bounds), min(b[1] for b in bounds),
              max(b[2] for b in bounds), max(b[3] for b in bounds))
    blocks = []
    for entry, path in layers:
        rel = Path(os.path.relpath(Path(path).resolve(), out.parent.resolve())).as_posix()
        entries = legend_entries(entry, path=None if entry.kind == "polygons" else path,
                                 monitoring=monitoring, classes_of=classes_of)
        blocks += _layer_block(entry, rel, crs=crs, srs=srs, extent=extent,
                               entries=entries)
    text = "\n".join([
        "# written by forestwatch (rule wms_mapfile); do not edit: it is rewritten",
        "MAP",
        f"  NAME {_q(name)}",
        "  STATUS ON",
        f"  EXTENT {' '.join(f'{v:.3f}' for v in extent)}",
        "  SIZE 800 800",
        "  UNITS METERS",
        "  SHAPEPATH \".\"",
        "  IMAGECOLOR 255 255 255",
        "  IMAGETYPE \"png\"",
        "  OUTPUTFORMAT",
        "    NAME \"png\"",
        "    DRIVER \"AGG/PNG\"",
        "    MIMETYPE \"image/png\"",
        "    IMAGEMODE RGBA",
        "    EXTENSION \"png\"",
        "    TRANSPARENT ON",
        "  END",
        _projection(crs).replace("    ", "  ", 1),
        "  WEB",
        "    METADATA",
        f'      "wms_title" {_q(title)}',
        f'      "wms_srs" {_q(srs)}',
        '      "wms_enable_request" "*"',
        '      "wms_getmap_formatlist" "image/png"',
        "    END",
        "  END",
        "  LEGEND",
        "    KEYSIZE 20 12",
        "    STATUS OFF",
        "    LABEL",
        "      TYPE BITMAP",
        "      SIZE MEDIUM",
        "      COLOR 0 0 0",
        "    END",
        "  END",
        *blocks,
        "END",
        "",
    ])
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return [entry.name for entry, _ in layers]


__all__ = ["write_mapfile", "WMS_CRS"]
