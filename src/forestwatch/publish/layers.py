"""The published layers: one table, read by the mapfile, the QGIS styles, the quicklooks
and the STAC catalog, so that the WMS, the files and the report show the same colours.

A :class:`Layer` says what a mosaic (or the alert polygons) holds and how to draw it:

* ``classes``: integer codes with names and colours (the nrt mask, the alert status). The
  codes, names and colours are read from the raster itself (its palette and its
  ``class_<code>`` tags, or a VRT's category names), so the map shows what the file says;
  ``classes`` in the table is the fallback for a file without them;
* ``date``: int32 days since 1970-01-01, 0 = none: binned by whole months between the
  start and end of monitoring, each bin named by its dates, the last bin open-ended;
* ``continuous``: a value range (``value_range``) cut into equal bins on the same ramp;
* ``polygons``: a vector layer whose ``field`` holds the codes of another layer's classes
  (``classes_from``).

Adding a layer that the workflow's ``mosaic`` rule makes is one entry of :data:`LAYERS`;
``rules/publish.smk`` publishes every entry whose file the workflow makes.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

RGBA = tuple[int, int, int, int]
EPOCH = dt.date(1970, 1, 1)

#: the colour ramp of dates and continuous values (viridis stops, dark = early/low)
RAMP: tuple[RGBA, ...] = (
    (68, 1, 84, 255), (65, 68, 135, 255), (42, 120, 142, 255),
    (34, 168, 132, 255), (122, 209, 81, 255), (253, 231, 37, 255),
)


@dataclass(frozen=True)
class Layer:
    """One published layer. ``name`` is the mosaic's layer name (``RunLayout.mosaic``) and
    the WMS layer name; ``kind`` one of ``classes``, ``date``, ``continuous``,
    ``polygons``; ``nodata`` the raster's nodata value (not drawn)."""

    name: str
    title: str
    kind: str
    nodata: int | None = None
    units: str = ""
    #: code -> (name, RGBA); fallback when the raster carries no palette
    classes: dict[int, tuple[str, RGBA]] = field(default_factory=dict)
    #: ``classes``: codes not drawn (a GeoTIFF palette has no alpha: "not forest", "no
    #: alert" would be opaque black)
    transparent: tuple[int, ...] = ()
    #: ``continuous``: (min, max) of the legend's value bins, in ``units``
    value_range: tuple[float, float] | None = None
    #: ``continuous``: values can exceed the range's max (a loss, a count): the last bin
    #: takes them all ("from ..."), so that the strongest are drawn, not left out
    open_above: bool = False
    #: ``polygons``: the attribute with the class code, and the layer whose classes it uses
    field: str | None = None
    classes_from: str | None = None
    #: ``polygons``: the layer (table) inside the vector file
    ogr_layer: str | None = None


def _mask_classes() -> dict[int, tuple[str, RGBA]]:
    from ..reports import MASK_CLASSES

    return dict(MASK_CLASSES)


#: every layer the workflow can publish, in drawing order (bottom first)
LAYERS: tuple[Layer, ...] = (
    Layer("mask", "nrt mask classes", "classes", nodata=255, classes=_mask_classes(),
          transparent=(0,)),
    Layer("detection_date", "Date of the confirmed break", "date", nodata=0,
          units="days since 1970-01-01"),
    Layer("alert_status", "Alert status", "classes", nodata=255, transparent=(0,)),
    Layer("first_detection_date", "Date of first detection", "date", nodata=0,
          units="days since 1970-01-01"),
    Layer("confirmation_date", "Date of confirmation", "date", nodata=0,
          units="days since 1970-01-01"),
    Layer("confidence", "Alert confidence", "continuous", nodata=255, units="percent",
          value_range=(0, 100)),
    Layer("last_observation_date", "Date of the last clear observation", "date", nodata=0,
          units="days since 1970-01-01"),
    Layer("anomaly_count", "Anomalous observations of the alert", "continuous",
          nodata=65535, units="observations", value_range=(0, 20), open_above=True),
    Layer("max_loss", "Largest drop of the index below its prediction", "continuous",
          nodata=-9999, units="index units", value_range=(0, 0.5), open_above=True),
    Layer("alert_polygons", "Alert polygons", "polygons", field="status",
          classes_from="alert_status", ogr_layer="alerts"),
)


def published(made: Iterable[str]) -> list[Layer]:
    """The table's layers whose file the workflow makes (``made``: mosaic layer names, and
    ``alert_polygons`` when it writes them), in table order."""
    made = set(made)
    return [e for e in LAYERS if e.name in made]


def layer(name: str) -> Layer:
    """The table entry named ``name`` (KeyError if there is none)."""
    for entry in LAYERS:
        if entry.name == name:
            return entry
    raise KeyError(f"no published layer {name!r}; known: {[e.name for e in LAYERS]}")


@dataclass(frozen=True)
class LegendEntry:
    """Pixels with ``lo <= value <= hi`` (``hi`` None: no upper bound) are drawn in
    ``rgba`` and called ``name`` in legends."""

    name: str
    lo: float
    hi: float | None
    rgba: RGBA

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgba[:3])


def ramp_colour(t: float) -> RGBA:
    """The ramp's colour at ``t`` in [0, 1] (linear between the stops)."""
    t = min(max(t, 0.0), 1.0) * (len(RAMP) - 1)
    i = min(int(t), len(RAMP) - 2)
    f = t - i
    return tuple(round(a + (b - a) * f) for a, b in zip(RAMP[i], RAMP[i + 1], strict=True))


def days(day: dt.date) -> int:
    """Days since 1970-01-01 (the date layers' unit)."""
    return (day - EPOCH).days


def _month_start(day: dt.date, months: int = 0) -> dt.date:
    m = day.year * 12 + day.month - 1 + months
    return dt.date(m // 12, m % 12 + 1, 1)


def date_entries(start: dt.date, end: dt.date, *, bins: int = 6) -> list[LegendEntry]:
    """Bins of whole months from the month of ``start`` to past ``end``, at most ``bins``
    of them plus an open-ended last one ("from <date>") for dates later than ``end``
    (new alerts of the daily runs), each named by its first and last day."""
    first = _month_start(start)
    months = max(1, (end.year - first.year) * 12 + end.month - first.month + 1)
    step = -(-months // bins)
    edges = [_month_start(first, k) for k in range(0, months + step, step)]
    entries = []
    n = len(edges) - 1
    for k in range(n):
        lo, hi = edges[k], edges[k + 1] - dt.timedelta(days=1)
        entries.append(LegendEntry(f"{lo} - {hi}", days(lo), days(hi),
                                   ramp_colour(k / n)))
    entries.append(LegendEntry(f"from {edges[-1]}", days(edges[-1]), None, ramp_colour(1.0)))
    if entries[0].lo > 1:  # anything earlier (before monitoring started) joins the first bin
        entries[0] = LegendEntry(f"until {edges[1] - dt.timedelta(days=1)}", 1,
                                 entries[0].hi, entries[0].rgba)
    return entries


def value_entries(lo: float, hi: float, *, bins: int = 5, units: str = "",
                  open_above: bool = False) -> list[LegendEntry]:
    """Equal bins between ``lo`` and ``hi`` on the ramp; with ``open_above`` the last bin
    has no upper bound ("from ..."): values above ``hi`` are drawn in its colour."""
    width = (hi - lo) / bins
    unit = f" {units}" if units and units != "percent" else ("%" if units == "percent" else "")
    out = []
    for k in range(bins):
        a = lo + k * width
        colour = ramp_colour(k / (bins - 1))
        if k == bins - 1:
            out.append(LegendEntry(f"from {a:g}{unit}", a, None, colour) if open_above
                       else LegendEntry(f"{a:g} - {hi:g}{unit}", a, hi, colour))
        else:
            b = lo + (k + 1) * width
            out.append(LegendEntry(f"{a:g} - {b:g}{unit}", a, b - 1e-9, colour))
    return out


def raster_classes(path: str | Path, fallback: dict[int, tuple[str, RGBA]] | None = None,
                   transparent: Iterable[int] = ()) -> dict[int, tuple[str, RGBA]]:
    """Code -> (name, RGBA) from a class raster: the named codes (the ``class_<code>``
    tags of a tile COG, or a VRT's category names) in the colours of its palette, codes in
    ``transparent`` with alpha 0 (a GeoTIFF palette has no alpha). A raster without a
    palette or names gives ``fallback``."""
    import rasterio

    with rasterio.open(path) as src:
        try:
            cmap = src.colormap(1)
        except ValueError:
            cmap = {}
        tags = src.tags(1)
    names = {int(k[6:]): v for k, v in tags.items() if k.startswith("class_")}
    if not names and str(path).endswith(".vrt"):
        cats = ET.parse(path).getroot().find("VRTRasterBand/CategoryNames")
        if cats is not None:
            names = {i: c.text for i, c in enumerate(cats.findall("Category")) if c.text}
    if not cmap or not names:
        return dict(fallback or {})
    transparent = set(transparent)
    return {code: (name, tuple(int(c) for c in cmap.get(code, (0, 0, 0, 255))[:3])
                   + ((0,) if code in transparent else (255,)))
            for code, name in sorted(names.items())}


def legend_entries(entry: Layer, *, path: str | Path | None, monitoring: tuple[dt.date, dt.date],
                   classes_of: dict[str, dict[int, tuple[str, RGBA]]] | None = None
                   ) -> list[LegendEntry]:
    """What a layer draws, in order: one entry per class, date bin or value bin.
    ``monitoring`` is (first, last) day of monitoring (the date bins); ``path`` the layer's
    raster (classes are read from it); ``classes_of`` the classes of other layers (for
    polygons)."""
    if entry.kind == "classes":
        classes = (raster_classes(path, entry.classes, entry.transparent) if path
                   else entry.classes)
        return [LegendEntry(name, code, code, rgba) for code, (name, rgba) in classes.items()]
    if entry.kind == "date":
        return date_entries(*monitoring)
    if entry.kind == "continuous":
        return value_entries(*entry.value_range, units=entry.units,
                             open_above=entry.open_above)
    if entry.kind == "polygons":
        classes = (classes_of or {}).get(entry.classes_from, {})
        return [LegendEntry(name, code, code, rgba) for code, (name, rgba) in classes.items()
                if rgba[3] > 0]
    raise ValueError(f"layer {entry.name}: unknown kind {entry.kind!r}")


__all__ = ["Layer", "LAYERS", "LegendEntry", "layer", "published", "legend_entries", "date_entries",
           "value_entries", "raster_classes", "ramp_colour", "days", "RAMP"]
