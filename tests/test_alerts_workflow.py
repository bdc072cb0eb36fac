"""The alerts through the workflow and a daily run, on the small synthetic archive with the
grid shifted (grid.origin) so that a tile edge cuts through a clear-cut that is detected,
but for the most part not yet confirmed, at the end of the catch-up.

The clear-cut must become one alert polygon spanning both tiles, with one id; the daily
run that follows confirms it, and the alert keeps its id and its first-detection date.
The polygons' areas are their pixel counts times the pixel area, and the area statistics
add up to the open-alert pixels of the status mosaic.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from conftest import deploy, small_config
from shapely.geometry import box

from forestwatch.grid import make_tiles
from forestwatch.layout import RunLayout

pytestmark = pytest.mark.workflow

EDGE_X = 4462340.0  # a tile edge with grid.origin [740, 0] and 1200 m tiles
CATCH_UP, TODAY = "2023-01-10", "2023-03-31"


def _cli(workdir, *args):
    return subprocess.run([sys.executable, "-m", "forestwatch.cli", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("alerts")
    cfg = small_config(run_name="alerts", grid={"origin": [740, 0]},
                       fast_forward={"until": CATCH_UP})
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    deploy(workdir, cfg_path)
    layout = RunLayout(workdir / "results" / "alerts")
    before = gpd.read_file(layout.alert_polygons(), layer="alerts")
    proc = _cli(workdir, "daily", "--config", str(cfg_path), "--today", TODAY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = gpd.read_file(layout.alert_polygons(), layer="alerts")
    return {"cfg": cfg, "layout": layout, "before": before, "after": after,
            "truth": workdir / cfg["synthetic"]["folder"] / "truth"}


def _clear_cut_across_the_edge(runs):
    """The truth's clear-cut pixels touching the edge from both sides, as a geometry."""
    with rasterio.open(runs["truth"] / "disturbance_type.tif") as src:
        kind, transform = src.read(1), src.transform
    with rasterio.open(runs["truth"] / "disturbance_date.tif") as src:
        day = src.read(1)
    until = (dt.date.fromisoformat(CATCH_UP) - dt.date(1970, 1, 1)).days
    col = int(round((EDGE_X - transform.c) / transform.a))
    rows = np.flatnonzero((kind[:, col - 1] == 1) & (kind[:, col] == 1)
                          & (day[:, col] > 0) & (day[:, col] < until))
    assert rows.size, "the archive has no clear-cut across the edge before the catch-up"
    y_top = transform.f + rows.min() * transform.e
    y_bottom = transform.f + (rows.max() + 1) * transform.e
    return box(EDGE_X - 2 * transform.a, y_bottom, EDGE_X + 2 * transform.a, y_top)


def test_a_clear_cut_across_a_tile_edge_is_one_alert_that_keeps_its_id(runs):
    tiles = [t.id for t in make_tiles(runs["cfg"])]
    assert len(tiles) == 3
    cut = _clear_cut_across_the_edge(runs)
    before = runs["before"][runs["before"].intersects(cut)]
    assert len(before) == 1, before.drop(columns="geometry")
    alert = before.iloc[0]
    assert len(alert["tiles"].split(",")) == 2  # one polygon over both tiles
    # detected, most of it not yet confirmed at the catch-up (an alert's status is the
    # most advanced of its pixels')
    assert alert["confirmed_share"] < 0.5, alert.drop("geometry").to_dict()
    assert alert.geometry.contains(cut.intersection(alert.geometry).buffer(-1))

    after = runs["after"][runs["after"]["alert_id"] == alert["alert_id"]]
    assert len(after) == 1
    grown = after.iloc[0]
    assert grown["status"] == 3 and grown["confirmed_share"] > 0.9, grown.to_dict()
    assert grown["first_date"] == alert["first_date"]  # still the same alert
    assert grown.geometry.intersection(alert.geometry).area >= 0.9 * alert.geometry.area


def test_areas_are_pixel_counts_and_statistics_add_up(runs):
    layout, res = runs["layout"], runs["cfg"]["grid"]["resolution"]
    after = runs["after"]
    assert after.crs.to_epsg() == 3035
    for col in ("first_date", "confirmed_date", "updated"):
        assert pd.api.types.is_datetime64_any_dtype(after[col])
    np.testing.assert_allclose(after["area_ha"], after["n_pixels"] * res * res / 1e4)
    np.testing.assert_allclose(after.geometry.area / 1e4, after["area_ha"])
    assert (after["area_ha"] >= runs["cfg"]["alerts"]["min_mapping_unit_ha"]).all()
    table = pd.read_csv(layout.alert_area("tile"))
    with rasterio.open(layout.mosaic("alert_status")) as src:
        status = src.read(1)
    for code in (1, 2, 3):
        assert table.loc[table["status"] == code, "pixels"].sum() == (status == code).sum()
