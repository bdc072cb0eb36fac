"""The STAC catalog of a run's outputs: valid STAC 1.1 (stac-validator, with the core,
projection, raster and file schemas from local copies: no network), checksums that are
the files' SHA-256, the source items of each tile's ledger, and, after a daily run, new
checksums for the tiles it updated."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
import yaml
from conftest import REPO, deploy, small_config, snakemake

from forestwatch.layout import RunLayout
from forestwatch.state import read_ledger

pytestmark = pytest.mark.workflow

SCHEMAS = REPO / "tests" / "schemas" / "stac"
TILES = ["X3718_Y2537", "X3719_Y2537"]


@pytest.fixture(scope="module")
def schema_map(tmp_path_factory) -> dict[str, str]:
    """Schema URL -> local file: pystac's bundled core and GeoJSON schemas, the vendored
    extension schemas, pyproj's PROJJSON schema."""
    import pyproj
    from pystac.validation.local_validator import get_local_schema_cache

    folder = tmp_path_factory.mktemp("schemas")
    out = {}
    for k, (url, schema) in enumerate(get_local_schema_cache().items()):
        path = folder / f"{k}.json"
        path.write_text(json.dumps(schema))
        out[url] = str(path)
    out |= {
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json":
            str(SCHEMAS / "projection-v2.0.0.json"),
        "https://stac-extensions.github.io/raster/v1.1.0/schema.json":
            str(SCHEMAS / "raster-v1.1.0.json"),
        "https://stac-extensions.github.io/file/v2.1.0/schema.json":
            str(SCHEMAS / "file-v2.1.0.json"),
        "https://proj.org/schemas/v0.7/projjson.schema.json":
            str(Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json"),
    }
    return out


def _validate(path: str, schema_map: dict) -> dict:
    from stac_validator.validate import StacValidate

    v = StacValidate(str(path), schema_map=schema_map)
    v.run()
    return v.message[-1]


def _sha(path: Path) -> str:
    return "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def _items(layout: RunLayout) -> dict[str, dict]:
    return {i: json.loads(Path(layout.stac_item(i)).read_text()) for i in [*TILES, "mosaic"]}


def test_catalog_validates_with_stac_validator(workflow_run, schema_map):
    layout = RunLayout(workflow_run / "results" / "small")
    msg = _validate(layout.stac_catalog(), schema_map)
    assert msg["valid_stac"], msg
    for item in [*TILES, "mosaic"]:
        msg = _validate(layout.stac_item(item), schema_map)
        assert msg["valid_stac"], msg
        checked = " ".join(msg["schema"])
        for ext in ("projection", "raster", "file"):
            assert ext in checked, msg  # the extensions were validated, not skipped


def test_an_invalid_item_is_refused(workflow_run, schema_map, tmp_path):
    """The validation can fail: a checksum that is not a multihash string, a raster band
    without its data type name."""
    layout = RunLayout(workflow_run / "results" / "small")
    item = json.loads(Path(layout.stac_item(TILES[0])).read_text())
    item["assets"]["mask"]["file:checksum"] = 12
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(item))
    assert not _validate(bad, schema_map)["valid_stac"]


def test_assets_carry_the_files_checksums_projection_and_bands(workflow_run):
    layout = RunLayout(workflow_run / "results" / "small")
    items = _items(layout)
    for tile in TILES:
        item = items[tile]
        folder = Path(layout.stac_item(tile)).parent
        assert {"mask", "detection_date", "alert_status", "first_detection_date",
                "confirmation_date", "confidence", "state", "fitted_state"} <= set(item["assets"])
        assert (folder / item["assets"]["fitted_state"]["href"]).resolve() == Path(
            layout.fitted_state(tile)).resolve()  # the state is read with it
        for key, asset in item["assets"].items():
            path = (folder / asset["href"]).resolve()
            assert asset["file:checksum"] == _sha(path), key
            assert asset["file:size"] == path.stat().st_size
        with rasterio.open(layout.report(tile, "detection_date")) as src:
            assert item["properties"]["proj:code"] == "EPSG:3035"
            assert item["properties"]["proj:shape"] == [src.height, src.width]
            assert item["properties"]["proj:bbox"] == list(src.bounds)
        assert item["assets"]["detection_date"]["raster:bands"] == [
            {"data_type": "int32", "nodata": 0, "spatial_resolution": 20.0,
             "unit": "days since 1970-01-01"}]
        assert item["assets"]["mask"]["raster:bands"][0]["nodata"] == 255
    mosaic = items["mosaic"]
    assert {"mask", "detection_date", "alert_status", "mask_qml", "alert_status_qml",
            "summary_json", "alerts_gpkg", "alerts_qml", "area_by_tile_csv"} <= set(mosaic["assets"])
    assert mosaic["assets"]["mask_qml"]["roles"] == ["style"]


def test_items_name_their_source_items_software_and_parameters(workflow_run):
    layout = RunLayout(workflow_run / "results" / "small")
    items = _items(layout)
    for tile in TILES:
        props = items[tile]["properties"]
        ledger, digest = read_ledger(layout.current_state(tile))
        expected = [*ledger.fit.items, *(i for e in ledger.applied for i in e.items)]
        assert props["forestwatch:source_items"] == list(dict.fromkeys(expected))
        assert len(props["forestwatch:source_items"]) > 50
        assert props["end_datetime"] == f"{ledger.last_day}T23:59:59Z"
        assert props["forestwatch:state_sha256"] == digest
        assert props["forestwatch:software"]["nrt"] == "0.3.0"
        assert props["forestwatch:parameters"]["monitor"]["class"] == "IQR"
        links = {link["rel"]: link["href"] for link in items[tile]["links"]}
        assert links["collection"] == "../collection.json"
        source = (Path(layout.stac_item(tile)).parent / links["derived_from"]).resolve()
        assert source.name == "items.json" and source.exists()
    coll = json.loads(Path(layout.stac_catalog()).read_text())
    hrefs = {link["href"] for link in coll["links"] if link["rel"] == "item"}
    assert hrefs == {f"./{i}/{i}.json" for i in [*TILES, "mosaic"]}


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "forestwatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "forestwatch.cli"]


def test_after_a_daily_run_the_updated_tiles_have_new_checksums(tmp_path, schema_map):
    """`snakemake` up to 2023-03-31, then `forestwatch daily` to 2023-06-30 (per-tile
    Snakemake jobs): the catalog is rebuilt in the daily run's Snakemake run, the updated
    tiles' items have the new files' checksums and a later end."""
    cfg = small_config(run_name="ops", fast_forward={"until": "2023-03-31"})
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    deploy(tmp_path, cfg_path)
    layout = RunLayout(tmp_path / "results" / "ops")
    before = {t: json.loads(Path(layout.stac_item(t)).read_text()) for t in TILES}
    proc = subprocess.run(_cli() + ["daily", "--config", str(cfg_path), "--today", "2023-06-30"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (record,) = Path(layout.runs()).glob("*/record.json")
    updated = json.loads(record.read_text())["tiles_updated"]
    assert updated, "the daily run updated no tile"
    changed_reports = 0
    for tile in updated:
        after = json.loads(Path(layout.stac_item(tile)).read_text())
        old, new = before[tile]["assets"], after["assets"]
        assert new["state"]["file:checksum"] != old["state"]["file:checksum"]
        assert new["state"]["file:checksum"] == _sha(Path(layout.current_state(tile)))
        for layer in ("mask", "detection_date"):
            assert new[layer]["file:checksum"] == _sha(Path(layout.report(tile, layer)))
            changed_reports += new[layer]["file:checksum"] != old[layer]["file:checksum"]
        assert after["properties"]["end_datetime"] > before[tile]["properties"]["end_datetime"]
        assert after["properties"]["forestwatch:runs"][-1] == record.parent.name
    assert changed_reports, "no report changed in three months of new acquisitions"
    assert _validate(layout.stac_item(updated[0]), schema_map)["valid_stac"]


def test_a_tile_item_is_kept_until_one_of_its_files_changes(workflow_run, tmp_path):
    """A daily run remakes the items of the tiles it updated and keeps the others' as they
    are (a catalog of thousands of tiles is rewritten every day): kept while every file
    is older than the item and the collection, links and item format are the same."""
    import shutil

    from forestwatch.publish.stac_catalog import ITEM_FORMAT, tile_item

    src, run = RunLayout(workflow_run / "results" / "small"), RunLayout(tmp_path / "small")
    tile = TILES[0]
    reports = {}  # copies: the module's run stays as it is
    for path in sorted(Path(src.report_folder(tile)).glob("*.tif")):
        copy = Path(run.report_folder(tile)) / path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
        reports[path.stem] = str(copy)
    for state in ("current_state", "fitted_state"):
        Path(getattr(run, state)(tile)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(getattr(src, state)(tile), getattr(run, state)(tile))
    item_path = Path(run.stac_item(tile))
    catalog = str(workflow_run / "resources" / "items.json")

    def make(source=catalog):
        return tile_item(tile=tile, reports=reports, state=run.current_state(tile),
                         item_path=item_path, collection="forestwatch-small", source=source,
                         history_start="2022-01-01")

    first = json.loads(json.dumps(make()))  # as written (tuples as lists)
    assert first["properties"]["forestwatch:item_format"] == ITEM_FORMAT
    assert {"state", "fitted_state", *reports} == set(first["assets"])
    written = item_path.stat().st_mtime_ns
    assert make() == first and item_path.stat().st_mtime_ns == written  # kept, not rewritten

    # a report rewritten, as a tile's update does: the item is made again, with the file's
    # new checksum and size
    changed = Path(reports["alert_status"])
    changed.write_bytes(changed.read_bytes() + b"\0")
    second = make()
    assert item_path.stat().st_mtime_ns > written
    assert second["assets"]["alert_status"]["file:checksum"] == _sha(changed)
    assert second["assets"]["alert_status"]["file:size"] == changed.stat().st_size
    assert second["assets"]["mask"] == first["assets"]["mask"]

    # another source catalog: made again with the new link
    other = str(tmp_path / "elsewhere" / "items.json")
    third = make(source=other)
    links = {link["rel"]: link["href"] for link in third["links"]}
    assert (item_path.parent / links["derived_from"]).resolve() == Path(other).resolve()

    # an item of another format version is made again
    old = {**third, "properties": {**third["properties"], "forestwatch:item_format": 0}}
    item_path.write_text(json.dumps(old))
    assert make(source=other)["properties"]["forestwatch:item_format"] == ITEM_FORMAT


def test_the_workflow_keeps_the_items_of_unchanged_tiles(workflow_run):
    """In the workflow the catalog's items are update() outputs: Snakemake leaves them in
    place for the job (it deletes a plain output before its job runs), so a catalog job
    finds them and keeps those of unchanged tiles. A mark written into one item survives
    a forced rerun of the job; the collection is written again."""
    layout = RunLayout(workflow_run / "results" / "small")
    path = Path(layout.stac_item(TILES[0]))
    original = path.read_text()
    marked = json.loads(original)
    marked["properties"]["test:mark"] = "kept"
    path.write_text(json.dumps(marked))
    collection = Path(layout.stac_catalog())
    before = collection.stat().st_mtime_ns
    try:
        proc = snakemake(workflow_run, "--forcerun", "stac_catalog")
        assert "stac_catalog" in proc.stdout + proc.stderr
        assert json.loads(path.read_text())["properties"].get("test:mark") == "kept"
        assert collection.stat().st_mtime_ns > before
    finally:
        path.write_text(original)
