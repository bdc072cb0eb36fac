"""QGIS style files (``.qml``) beside the mosaics and the alert polygons (rule
``qgis_styles``): QGIS loads ``<name>.qml`` by itself when it opens ``<name>.vrt`` (or
``.gpkg``), so a user who opens the files directly sees the WMS's colours and legend.

Classes become a paletted renderer (one entry per class, named), date and value bins a
discrete pseudocolour ramp (each bin's upper bound, named by its dates), polygons a
categorized renderer on the class field. The entries are the mapfile's
(:func:`forestwatch.publish.layers.legend_entries`).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from ..io import atomic_path
from .layers import Layer, LegendEntry

_HEAD = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


def _colour(e: LegendEntry) -> str:
    return "{},{},{},{}".format(*e.rgba)


def _raster(entry: Layer, entries: Sequence[LegendEntry]) -> ET.Element:
    root = ET.Element("qgis", version="3.22.0", styleCategories="AllStyleCategories")
    pipe = ET.SubElement(root, "pipe")
    if entry.kind == "classes":
        ren = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1", opacity="1",
                            alphaBand="-1", nodataColor="")
        pal = ET.SubElement(ren, "colorPalette")
        for e in entries:
            ET.SubElement(pal, "paletteEntry", value=f"{e.lo:g}", color=e.hex,
                          alpha=str(e.rgba[3]), label=e.name)
    else:
        lo = entries[0].lo
        hi = entries[-1].hi if entries[-1].hi is not None else entries[-1].lo
        ren = ET.SubElement(pipe, "rasterrenderer", type="singlebandpseudocolor", band="1",
                            opacity="1", alphaBand="-1", nodataColor="",
                            classificationMin=f"{lo:g}", classificationMax=f"{hi:g}")
        shader = ET.SubElement(ren, "rastershader")
        ramp = ET.SubElement(shader, "colorrampshader", colorRampType="DISCRETE",
                             classificationMode="3", clip="0",
                             minimumValue=f"{lo:g}", maximumValue=f"{hi:g}")
        for e in entries:
            upper = "inf" if e.hi is None else f"{math.floor(e.hi) if entry.kind == 'date' else e.hi:.9g}"
            ET.SubElement(ramp, "item", value=upper, color=e.hex, alpha=str(e.rgba[3]),
                          label=e.name)
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0",
                  colorizeOn="0", colorizeStrength="100")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    return root


def _polygons(entry: Layer, entries: Sequence[LegendEntry]) -> ET.Element:
    root = ET.Element("qgis", version="3.22.0", styleCategories="AllStyleCategories")
    ren = ET.SubElement(root, "renderer-v2", type="categorizedSymbol", attr=entry.field,
                        symbollevels="0", enableorderby="0", forceraster="0")
    cats = ET.SubElement(ren, "categories")
    symbols = ET.SubElement(ren, "symbols")
    for k, e in enumerate(entries):
        ET.SubElement(cats, "category", value=f"{e.lo:g}", symbol=str(k), label=e.name,
                      render="true")
        sym = ET.SubElement(symbols, "symbol", type="fill", name=str(k), alpha="1",
                            clip_to_extent="1", force_rhr="0")
        layer = ET.SubElement(sym, "layer", {"class": "SimpleFill", "enabled": "1",
                                             "locked": "0", "pass": "0"})
        props = {"color": _colour(e), "outline_color": "40,40,40,255", "outline_style": "solid",
                 "outline_width": "0.26", "outline_width_unit": "MM", "style": "solid"}
        opts = ET.SubElement(layer, "Option", type="Map")
        for key, value in props.items():
            ET.SubElement(opts, "Option", name=key, type="QString", value=value)
            ET.SubElement(layer, "prop", k=key, v=value)
    ET.SubElement(root, "blendMode").text = "0"
    return root


def write_qml(entry: Layer, entries: Sequence[LegendEntry], out: str | Path) -> None:
    """Write the QGIS style of ``entry`` (drawn as ``entries``) to ``out``, atomically."""
    root = _polygons(entry, entries) if entry.kind == "polygons" else _raster(entry, entries)
    ET.indent(root)
    with atomic_path(out) as tmp:
        tmp.write_text(_HEAD + ET.tostring(root, encoding="unicode") + "\n")


__all__ = ["write_qml"]
