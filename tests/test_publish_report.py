"""The report's pictures, the QGIS styles, and the layer table: the figures of a workflow
run show the mosaic's classes and counts, `snakemake --report` embeds them, the .qml
files have the WMS's colours, and a layer main's alerts will add (status classes from the
COG's tags, a confidence ramp, more dates) is served by MapServer from its table entry
alone."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import snakemake
from ports import free_port

from forestwatch.layout import RunLayout
from forestwatch.publish.layers import layer, legend_entries
from forestwatch.reports import MASK_CLASSES, build_vrt

RED = MASK_CLASSES[3][1][:3]
GREEN = MASK_CLASSES[1][1][:3]


def _png(path_or_bytes) -> np.ndarray:
    from PIL import Image

    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _colours(img: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in p) for p in np.unique(img.reshape(-1, 3), axis=0)}


@pytest.mark.workflow
def test_figures_show_the_mosaic_and_the_alerts_per_month(workflow_run):
    layout = RunLayout(workflow_run / "results" / "small")
    mask = _png(layout.figure("quicklook_mask"))
    assert {RED, GREEN} <= _colours(mask)
    dates = _png(layout.figure("quicklook_detection_date"))
    ramp = {e.rgba[:3] for e in legend_entries(layer("detection_date"), path=None,
                                               monitoring=(np.datetime64("2022-10-01").item(),
                                                           np.datetime64("2023-06-30").item()))}
    assert len(ramp & _colours(dates)) >= 4  # the colour bar's bins
    import pyogrio

    alerts = pyogrio.read_dataframe(layout.alert_polygons(), layer="alerts", read_geometry=False)
    rows = [dict(zip(["month", "new", "new_area_ha", "confirmed", "confirmed_area_ha"],
                     line.split("\t"), strict=True)) for line in
            Path(layout.figure_table("alerts_per_month")).read_text().splitlines()[1:]]
    assert sum(int(r["new"]) for r in rows) == len(alerts) > 0
    assert sum(float(r["new_area_ha"]) for r in rows) == pytest.approx(alerts["area_ha"].sum(),
                                                                        abs=0.05)
    assert sum(int(r["confirmed"]) for r in rows) == int(alerts["confirmed_date"].notna().sum())
    months = [r["month"] for r in rows]
    assert months == sorted(months) and len(set(months)) == len(months)
    assert _png(layout.figure("run_history")).shape[0] > 100


@pytest.mark.workflow
def test_snakemake_report_embeds_the_figures(workflow_run):
    out = workflow_run / "report.html"
    snakemake(workflow_run, "--report", str(out))
    html = out.read_text()
    for name in ("quicklook_mask.png", "quicklook_detection_date.png", "alerts_per_month.png",
                 "run_history.png", "alerts_per_month.tsv", "summary.md"):
        assert name in html, name
    assert html.count(";base64,iVBORw0KGgo") >= 4  # the PNGs themselves, embedded


@pytest.mark.workflow
def test_qgis_styles_have_the_wms_colours(workflow_run):
    layout = RunLayout(workflow_run / "results" / "small")
    mapfile = Path(layout.wms_mapfile()).read_text()
    pal = ET.parse(layout.mosaic_style("mask")).getroot().findall(".//paletteEntry")
    got = {int(e.get("value")): (e.get("label"), e.get("color"), int(e.get("alpha"))) for e in pal}
    for code, (name, rgba) in MASK_CLASSES.items():
        label, colour, alpha = got[code]
        assert label == name and colour == "#{:02x}{:02x}{:02x}".format(*rgba[:3])
        assert alpha == (0 if code == 0 else 255)
        if code:  # drawn by the WMS in the same colour
            assert f'NAME "{name}"\n      EXPRESSION ([pixel] = {code})\n      STYLE\n' \
                   f"        COLOR {rgba[0]} {rgba[1]} {rgba[2]}" in mapfile
    items = ET.parse(layout.mosaic_style("detection_date")).getroot().findall(".//item")
    assert items[-1].get("value") == "inf" and items[-1].get("label").startswith("from ")
    for item in items:
        r, g, b = (int(item.get("color")[k:k + 2], 16) for k in (1, 3, 5))
        assert f'NAME "{item.get("label")}"' in mapfile and f"COLOR {r} {g} {b}" in mapfile


def test_run_history_counts_applied_items_and_failures(tmp_path):
    from forestwatch.publish.figures import run_history

    records = []
    for k, (applied, failed) in enumerate([(4, {}), (0, {}), (6, {"X1": "boom"})]):
        path = tmp_path / f"run{k}" / "record.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"run": f"run{k}", "today": f"2023-05-0{k + 1}",
                                    "items_applied": applied, "tiles_updated": ["X0"] * (k + 1),
                                    "failed_tiles": failed, "waiting_tiles": {},
                                    "exit_status": 1 if failed else 0}))
        records.append(path)
    rows = run_history(records, tmp_path / "history.png")
    assert [r["items_applied"] for r in rows] == [4, 0, 6]
    assert [r["failed"] for r in rows] == [0, 0, 1] and rows[-1]["tiles_updated"] == 3
    colours = _colours(_png(tmp_path / "history.png"))
    assert {(43, 131, 186), (171, 221, 164)} <= colours  # the bars: items, tiles


def _cog(path: Path, data: np.ndarray, *, nodata, tags: dict, cmap: dict | None = None):
    profile = dict(driver="COG", width=data.shape[1], height=data.shape[0], count=1,
                   dtype=data.dtype.name, crs="EPSG:3035", nodata=nodata,
                   transform=Affine(20, 0, 4461600, 0, -20, 3045600))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if cmap:
            dst.write_colormap(1, cmap)
        dst.update_tags(1, **tags)


@contextlib.contextmanager
def _mapserv(mapfile: Path):
    """A real mapserv behind the project's HTTP front serving ``mapfile`` on a free port;
    yields the WMS 1.3.0 base URL."""
    from forestwatch.publish.server import make_server

    port = free_port()
    server = make_server(mapfile=mapfile, config_file=mapfile.parent / "ms.conf", port=port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/wms?SERVICE=WMS&VERSION=1.3.0"
    finally:
        server.shutdown()
        server.server_close()


def _centre_colour(base: str, layer_name: str, x: float, y: float = 3045400) -> tuple:
    """The RGB GetMap draws at (``x``, ``y``, EPSG:3035) of ``layer_name``."""
    q = (f"{base}&REQUEST=GetMap&LAYERS={layer_name}&STYLES=&CRS=EPSG:3035"
         f"&BBOX={y - 20},{x - 20},{y + 20},{x + 20}&WIDTH=10&HEIGHT=10"
         "&FORMAT=image/png&TRANSPARENT=TRUE")
    with urllib.request.urlopen(q, timeout=60) as r:
        return tuple(_png(r.read())[5, 5])


def test_a_new_layer_is_one_table_entry_served_by_mapserver(tmp_path):
    """alert_status (classes from its COG's class_<code> tags and palette), confidence
    and first_detection_date: rasters shaped as main's alerts will write them, published
    through the table alone, answered by a real mapserv."""
    from forestwatch.publish.mapfile import write_mapfile
    from forestwatch.publish.server import find_mapserv

    if find_mapserv() is None:
        pytest.skip("mapserv (MapServer 8) is not installed: run deploy/install_mapserver.sh")
    names = {0: "no alert", 1: "first detection", 2: "provisional", 3: "confirmed",
             4: "returned to normal"}
    colours = {0: (0, 0, 0, 255), 1: (255, 255, 0, 255), 2: (255, 140, 0, 255),
               3: (200, 0, 0, 255), 4: (120, 120, 255, 255)}
    status = np.repeat(np.arange(5, dtype="uint8"), 12)[None, :].repeat(20, 0)
    (tmp_path / "mosaic").mkdir()
    _cog(tmp_path / "status.tif", status, nodata=255, cmap=colours,
         tags={f"class_{k}": v for k, v in names.items()})
    _cog(tmp_path / "confidence.tif", np.full((20, 60), 90, "uint8"), nodata=255,
         tags={"units": "percent"})
    _cog(tmp_path / "first.tif", np.full((20, 60), 19500, "int32"), nodata=0, tags={})
    layers = []
    for name, src in (("alert_status", "status"), ("confidence", "confidence"),
                      ("first_detection_date", "first")):
        build_vrt([tmp_path / f"{src}.tif"], tmp_path / "mosaic" / f"{name}.vrt")
        layers.append((layer(name), tmp_path / "mosaic" / f"{name}.vrt"))
    import datetime as dt

    mapfile = tmp_path / "publish" / "wms.map"
    write_mapfile(out=mapfile, layers=layers, crs="EPSG:3035", name="t", title="t",
                  monitoring=(dt.date(2023, 1, 1), dt.date(2023, 12, 31)))
    text = mapfile.read_text()
    for code in range(1, 5):
        assert f'NAME "{names[code]}"\n      EXPRESSION ([pixel] = {code})' in text
    assert 'NAME "no alert"' not in text  # transparent: not drawn
    with _mapserv(mapfile) as base:
        # x = 4461600 + 20 * (12 * code + 6): the middle of code's columns
        for code in (1, 3):
            x = 4461600 + 20 * (12 * code + 6)
            assert _centre_colour(base, "alert_status", x) == colours[code][:3]
        with urllib.request.urlopen(f"{base}&REQUEST=GetLegendGraphic&LAYER=alert_status"
                                    "&FORMAT=image/png&SLD_VERSION=1.1.0", timeout=60) as r:
            legend = _png(r.read())
        assert {colours[c][:3] for c in (1, 2, 3, 4)} <= _colours(legend)
        with urllib.request.urlopen(f"{base}&REQUEST=GetCapabilities", timeout=60) as r:
            caps = r.read().decode()
        for name in ("alert_status", "confidence", "first_detection_date"):
            assert f"<Name>{name}</Name>" in caps


@pytest.mark.parametrize("name", ["max_loss", "anomaly_count"])
def test_values_above_a_layers_range_are_drawn_in_its_last_bin(tmp_path, name):
    """A loss or a count can exceed the legend's range (a clear-cut's NBR drop of 0.7
    against bins up to 0.5): its last bin takes them ("from ..."), drawn by a real
    mapserv, where they were left out (drawn as no data). The quicklooks and the
    QGIS styles take the same legend entries."""
    import datetime as dt

    from forestwatch.publish.mapfile import write_mapfile
    from forestwatch.publish.server import find_mapserv

    entry = layer(name)
    lo, hi = entry.value_range
    entries = legend_entries(entry, path=None, monitoring=(dt.date(2023, 1, 1),
                                                           dt.date(2023, 12, 31)))
    assert entries[-1].hi is None and entries[-1].name.startswith("from "), entries[-1]
    above = hi * 1.5
    for value in (lo, (lo + hi) / 2, hi, above):  # each value in exactly one bin
        assert sum(e.lo <= value and (e.hi is None or value <= e.hi) for e in entries) == 1
    # a raster of three strips: the first bin, the last bin's range, above the range
    dtype = "float32" if name == "max_loss" else "uint16"
    values = np.repeat(np.array([lo, hi * 0.9, above], dtype=dtype), 20)[None, :].repeat(20, 0)
    (tmp_path / "mosaic").mkdir()
    _cog(tmp_path / f"{name}.tif", values, nodata=entry.nodata, tags={})
    vrt = tmp_path / "mosaic" / f"{name}.vrt"
    build_vrt([tmp_path / f"{name}.tif"], vrt)
    if find_mapserv() is None:
        pytest.skip("mapserv (MapServer 8) is not installed: run deploy/install_mapserver.sh")
    mapfile = tmp_path / "publish" / "wms.map"
    write_mapfile(out=mapfile, layers=[(entry, vrt)], crs="EPSG:3035", name="t", title="t",
                  monitoring=(dt.date(2023, 1, 1), dt.date(2023, 12, 31)))
    with _mapserv(mapfile) as base:
        for strip, colour in ((0, entries[0].rgba), (1, entries[-1].rgba),
                              (2, entries[-1].rgba)):
            x = 4461600 + 20 * (20 * strip + 10)  # the middle of the strip's columns
            assert _centre_colour(base, name, x) == colour[:3], (strip, colour)


def _figure_with_legend(outside: bool):
    """A quicklook-like figure: an image and a legend beside its axes (beyond the
    figure's right edge when ``outside``, in room left for it otherwise)."""
    from matplotlib.patches import Patch

    from forestwatch._plot import framed_axes

    fig, ax = framed_axes(width=3.0, height=3.0, left=0.8, bottom=0.6,
                          right=0.2 if outside else 3.2, top=0.4)
    ax.imshow(np.arange(100.0).reshape(10, 10), extent=(0, 1000, 0, 1000))
    ax.set_title("a title")
    ax.set_xlabel("x (m)")
    ax.legend(handles=[Patch(facecolor=c, label=f"class {c}") for c in ("red", "blue")],
              loc="upper left", bbox_to_anchor=(1.02, 1), title="a legend title")
    return fig


@pytest.mark.parametrize("outside", [False, True])
def test_a_tight_png_from_one_drawing_is_what_savefig_makes(tmp_path, outside):
    """save_png(tight=True) crops one drawing to what is drawn plus the pad: the same size
    (within a pixel's rounding) and the same picture as matplotlib's two-pass
    bbox_inches="tight"; with a legend drawn beyond the figure's edge it falls back to
    matplotlib's way, legend included."""
    from forestwatch._plot import PAD_INCHES, save_png

    ours, theirs = tmp_path / "ours.png", tmp_path / "theirs.png"
    save_png(_figure_with_legend(outside), ours, dpi=100, tight=True)
    _figure_with_legend(outside).savefig(theirs, dpi=100, bbox_inches="tight",
                                         pad_inches=PAD_INCHES)
    a, b = _png(ours), _png(theirs)
    assert abs(a.shape[0] - b.shape[0]) <= 1 and abs(a.shape[1] - b.shape[1]) <= 1
    assert a.shape[1] > 400  # the legend beside the 3-inch axes is in it
    rows, cols = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    differs = np.abs(a[:rows, :cols].astype(int) - b[:rows, :cols].astype(int)).max(axis=2) > 60
    assert differs.mean() < 0.03, differs.mean()  # anti-aliasing at a sub-pixel offset only
    white = (a == 255).all(axis=2)
    pad = round(PAD_INCHES * 100) - 1
    assert white[:pad].all() and white[-pad:].all() and white[:, :pad].all()
    assert not white[pad + 1:-pad - 1, pad + 1:-pad - 1].all()
