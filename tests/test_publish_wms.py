"""The WMS as a client sees it: `forestwatch serve` (MapServer 8's mapserv behind the
project's HTTP front) on 127.0.0.1 over a workflow run of the small config, asked by
OWSLib, by plain HTTP, and (when QGIS's Python bindings are installed) by headless QGIS.

The expected values come from the mosaic VRTs themselves: a pixel inside a confirmed
break (5 x 5 px of class 3 around it) and one inside undisturbed forest."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import small_config
from ports import free_port
from pyproj import Transformer
from scipy import ndimage

from forestwatch.layout import RunLayout
from forestwatch.publish.server import find_mapserv, read_pid
from forestwatch.reports import MASK_CLASSES

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(find_mapserv() is None, reason="mapserv (MapServer 8) is not installed: "
                       "run `sudo bash deploy/install_mapserver.sh`"),
]

CRSS = ["EPSG:3035", "EPSG:3857", "EPSG:4326"]
RED = MASK_CLASSES[3][1][:3]  # confirmed break
GREEN = MASK_CLASSES[1][1][:3]  # forest, no break
SYSTEM_PYTHON = "/usr/bin/python3"


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "forestwatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "forestwatch.cli"]


def _wait_for(url: str, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"forestwatch serve exited: {proc.communicate()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no answer from {url} within {timeout_s} s")


def _start(workdir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(_cli() + ["serve", "--config", "config.yaml", "--port", str(port)],
                            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for(f"http://127.0.0.1:{port}/wms?SERVICE=WMS&REQUEST=GetCapabilities", proc)
    return proc


def _stop(workdir: Path, proc: subprocess.Popen) -> subprocess.CompletedProcess:
    done = subprocess.run(_cli() + ["serve", "--config", "config.yaml", "--stop"], cwd=workdir,
                          capture_output=True, text=True, timeout=60)
    try:
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:  # never leave it behind, whatever --stop did
            proc.kill()
            proc.wait()
    return done


@pytest.fixture(scope="module")
def served(workflow_run):
    """The run's WMS on a free port: (base URL, run folder, layout)."""
    workdir = workflow_run
    (workdir / "config.yaml").write_text(yaml.safe_dump(small_config()))
    port = free_port()
    proc = _start(workdir, port)
    yield f"http://127.0.0.1:{port}/wms", workdir, RunLayout(workdir / "results" / "small")
    _stop(workdir, proc)


def _pixel(layout: RunLayout, code: int) -> tuple[float, float, int, int]:
    """Centre (x, y in the grid CRS) and (row, col) of a mosaic pixel of class ``code``
    whose 5 x 5 neighbourhood is all ``code``."""
    with rasterio.open(layout.mosaic("mask")) as src:
        mask, tr = src.read(1), src.transform
    core = np.argwhere(ndimage.binary_erosion(mask == code, np.ones((5, 5))))
    assert len(core), f"no 5 x 5 patch of class {code} in the mosaic"
    row, col = core[len(core) // 2]
    x, y = tr * (col + 0.5, row + 0.5)
    return float(x), float(y), int(row), int(col)


def _bbox(x: float, y: float, crs: str, half: float = 30.0) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) in ``crs``, easting first (OWSLib swaps it for WMS 1.3.0's
    northing-first CRSs itself)."""
    t = Transformer.from_crs("EPSG:3035", crs, always_xy=True)
    xs, ys = t.transform([x - half, x + half], [y - half, y + half])
    return min(xs), min(ys), max(xs), max(ys)


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:300]
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


@pytest.fixture(scope="module")
def wms(served):
    from owslib.wms import WebMapService

    return WebMapService(served[0], version="1.3.0", timeout=60)


PUBLISHED = ["mask", "detection_date", "alert_status", "first_detection_date",
             "confirmation_date", "confidence", "alert_polygons"]


def test_capabilities_list_every_layer_in_the_three_crs(wms):
    assert set(PUBLISHED) <= set(wms.contents)
    for name in PUBLISHED:
        layer = wms.contents[name]
        assert set(CRSS) <= set(layer.crsOptions), layer.crsOptions
        assert layer.boundingBox[-1] == "EPSG:3035"
        assert layer.queryable == 1
    assert "image/png" in wms.getOperationByName("GetMap").formatOptions


@pytest.mark.parametrize("crs", CRSS)
def test_getmap_draws_the_mosaic_in_its_colours_in_each_crs(served, wms, crs):
    _, _, layout = served
    for code, colour in ((3, RED), (1, GREEN)):
        x, y, _, _ = _pixel(layout, code)
        img = wms.getmap(layers=["mask"], styles=[""], srs=crs, bbox=_bbox(x, y, crs),
                         size=(30, 30), format="image/png", transparent=True)
        rgba = _png(img.read())
        assert tuple(rgba[15, 15]) == (*colour, 255), (crs, code, rgba[15, 15])


def test_wms_130_reads_northing_first_bboxes_of_epsg_3035_and_4326(served):
    """The axis order itself, without OWSLib's swapping: a northing-first bbox draws the
    break; the same numbers easting first miss it."""
    url, _, layout = served
    x, y, _, _ = _pixel(layout, 3)
    for crs in ("EPSG:3035", "EPSG:4326"):
        minx, miny, maxx, maxy = _bbox(x, y, crs)
        centre = {}
        for order, bbox in (("ne", (miny, minx, maxy, maxx)), ("en", (minx, miny, maxx, maxy))):
            q = (f"SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS=mask&STYLES=&CRS={crs}"
                 f"&BBOX={','.join(map(repr, bbox))}&WIDTH=30&HEIGHT=30&FORMAT=image/png"
                 "&TRANSPARENT=TRUE")
            with urllib.request.urlopen(f"{url}?{q}", timeout=60) as r:
                centre[order] = tuple(_png(r.read())[15, 15][:3])
        assert centre["ne"] == RED and centre["en"] != RED, (crs, centre)


def test_alert_status_and_polygons_are_drawn_in_the_status_colour(served, wms):
    """A pixel inside a confirmed clear-cut: the status layer and the alert polygon over it
    are drawn in the status palette's colour of 'confirmed' (read from the COG), and the
    polygon's GetFeatureInfo names its alert."""
    from forestwatch.publish.layers import raster_classes

    _, _, layout = served
    classes = raster_classes(layout.mosaic("alert_status"))
    name, rgba = classes[3]
    with rasterio.open(layout.mosaic("alert_status")) as src:
        status, tr = src.read(1), src.transform
    core = np.argwhere(ndimage.binary_erosion(status == 3, np.ones((9, 9))))
    assert len(core), "no confirmed clear-cut of 9 x 9 px"
    row, col = core[len(core) // 2]
    x, y = (float(v) for v in tr * (col + 0.5, row + 0.5))
    for lay in ("alert_status", "alert_polygons"):
        img = wms.getmap(layers=[lay], styles=[""], srs="EPSG:3857",
                         bbox=_bbox(x, y, "EPSG:3857"), size=(30, 30), format="image/png",
                         transparent=True)
        assert tuple(_png(img.read())[15, 15][:3]) == rgba[:3], lay
    info = _info(wms, "alert_polygons", x, y)
    assert info["status"] == "3" and int(info["alert_id"]) > 0, info
    assert float(info["area_ha"]) >= 0.5, info


def _info(wms, layer: str, x: float, y: float) -> dict:
    resp = wms.getfeatureinfo(layers=[layer], query_layers=[layer], srs="EPSG:3035",
                              bbox=(x - 50, y - 50, x + 50, y + 50), size=(11, 11),
                              format="image/png", info_format="text/plain", xy=(5, 5),
                              feature_count=1)
    text = resp.read().decode()
    fields = dict(line.strip().split(" = ", 1) for line in text.splitlines() if " = " in line)
    return {k: v.strip("'") for k, v in fields.items()}


def test_getfeatureinfo_returns_the_status_and_date_of_a_pixel(served, wms):
    _, _, layout = served
    x, y, row, col = _pixel(layout, 3)
    with rasterio.open(layout.mosaic("detection_date")) as src:
        expected_days = int(src.read(1)[row, col])
    assert expected_days > 0
    status = _info(wms, "mask", x, y)
    assert status["value_0"] == "3" and status["class"] == "confirmed break", status
    date = _info(wms, "detection_date", x, y)
    assert int(date["value_0"]) == expected_days, date
    day = dt.date(1970, 1, 1) + dt.timedelta(days=expected_days)
    first, _, last = date["class"].partition(" - ")  # the bin that holds the day
    assert (first.startswith("until") or dt.date.fromisoformat(first) <= day) and \
        (not last or day <= dt.date.fromisoformat(last)), (day, date["class"])


def test_legend_graphics_show_the_class_colours_and_the_dated_bins(wms):
    for name, wanted in (("mask", [RED, GREEN]), ("detection_date", [])):
        url = wms.contents[name].styles["default"]["legend"]
        with urllib.request.urlopen(url, timeout=60) as r:
            assert r.headers["Content-Type"] == "image/png"
            rgba = _png(r.read())
        colours = {tuple(p) for p in rgba.reshape(-1, 4)[:, :3]}
        assert rgba.shape[0] >= 20 * (2 if name == "mask" else 5), rgba.shape  # a key per class
        for colour in wanted:
            assert colour in colours, (name, colour)


def test_a_tile_rewritten_in_place_shows_without_a_restart(served, wms, tmp_path):
    """What a daily run does to a tile's report: the next GetMap draws the new pixels."""
    _, _, layout = served
    x, y, row, col = _pixel(layout, 3)
    tile = next(p for p in Path(layout.root, "reports").glob("*/mask.tif")
                if _contains(p, x, y))
    backup = tmp_path / "mask.tif"
    shutil.copy2(tile, backup)
    try:
        with rasterio.open(tile) as src:
            profile, data, cmap, tags = src.profile, src.read(1), src.colormap(1), src.tags(1)
            r, c = src.index(x, y)
        data[max(r - 3, 0):r + 4, max(c - 3, 0):c + 4] = 1
        with rasterio.open(tile, "w", **profile) as dst:
            dst.write(data, 1)
            dst.write_colormap(1, cmap)
            dst.update_tags(1, **tags)
        img = wms.getmap(layers=["mask"], styles=[""], srs="EPSG:3035",
                         bbox=_bbox(x, y, "EPSG:3035"), size=(30, 30), format="image/png",
                         transparent=True)
        assert tuple(_png(img.read())[15, 15][:3]) == GREEN
    finally:
        shutil.copy2(backup, tile)


def _contains(path: Path, x: float, y: float) -> bool:
    with rasterio.open(path) as src:
        b = src.bounds
    return b.left <= x < b.right and b.bottom < y <= b.top


def test_serve_refuses_a_second_server_and_stop_ends_it(served, tmp_path):
    _, workdir, layout = served
    assert read_pid(layout.serve_pid()), "the running server has no PID file"
    second = subprocess.run(_cli() + ["serve", "--config", "config.yaml", "--port",
                                      str(free_port())], cwd=workdir, capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 2 and "already runs" in second.stderr, second.stderr
    # a copy of the run's published files, served and stopped by the documented commands
    copy = RunLayout(tmp_path / "results" / "small")
    for folder in ("publish", "mosaic", "reports"):
        shutil.copytree(Path(layout.root, folder), Path(copy.root, folder))
    Path(copy.serve_pid()).unlink()
    shutil.copy2(workdir / "config.yaml", tmp_path / "config.yaml")
    port = free_port()
    proc = _start(tmp_path, port)
    assert read_pid(copy.serve_pid()) == proc.pid
    done = _stop(tmp_path, proc)
    assert done.returncode == 0 and f"pid {proc.pid}" in done.stdout, done
    assert proc.returncode == 0 and not Path(copy.serve_pid()).exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/wms", timeout=5)
    again = _stop(tmp_path, subprocess.Popen(["true"]))
    assert again.returncode == 0 and "no WMS server runs" in again.stdout


QGIS_SCRIPT = r"""
import json, os, sys
from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem,
                       QgsMapRendererSequentialJob, QgsMapSettings, QgsRasterLayer, QgsRectangle)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor
url, vrt, points = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
out = {}
layers = {"wms": QgsRasterLayer("contextualWMSLegend=0&crs=EPSG:3035&dpiMode=7"
                                f"&format=image/png&layers=mask&styles=&url={url}", "mask", "wms"),
          "file": QgsRasterLayer(vrt, "mask_file", "gdal")}
for name, layer in layers.items():
    out[name] = {"valid": layer.isValid(), "renderer": layer.renderer().type()
                 if layer.isValid() else layer.error().summary()}
    for key, (x, y) in points.items():
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
        settings.setExtent(QgsRectangle(x - 30, y - 30, x + 30, y + 30))
        settings.setOutputSize(QSize(30, 30))
        settings.setBackgroundColor(QColor(255, 255, 255, 0))
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        c = job.renderedImage().pixelColor(15, 15)
        out[name][key] = [c.red(), c.green(), c.blue(), c.alpha()]
print(json.dumps(out), flush=True)
os._exit(0)  # QGIS 3.22's Python bindings crash on interpreter exit
"""


def _qgis_available() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True,
                          timeout=120).returncode == 0


@pytest.mark.skipif(not _qgis_available(), reason="QGIS's Python bindings are not installed "
                    "(Debian: sudo bash tests/services/install_qgis.sh)")
def test_headless_qgis_renders_the_wms_and_the_styled_mosaic_in_the_same_colours(served):
    """QGIS draws the WMS, and the mosaic VRT opened as a file with the .qml beside it
    (QGIS loads it by itself), in the same colours: a break red, not-forest transparent
    (the COG's palette alone would draw it opaque black: a GeoTIFF palette has no alpha)."""
    url, workdir, layout = served
    points = {"break": _pixel(layout, 3)[:2], "not_forest": _pixel(layout, 0)[:2]}
    proc = subprocess.run([SYSTEM_PYTHON, "-c", QGIS_SCRIPT, url,
                           str(Path(layout.mosaic("mask")).resolve()), json.dumps(points)],
                          capture_output=True, text=True, timeout=300,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin",
                               "HOME": str(workdir), "XDG_RUNTIME_DIR": str(workdir)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["wms"]["valid"] and out["file"]["valid"], out
    assert out["file"]["renderer"] == "paletted", out
    for name in ("wms", "file"):
        assert out[name]["break"] == [*RED, 255], out
        assert out[name]["not_forest"][3] == 0, out
