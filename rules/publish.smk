# Publishing (forestwatch.publish): the WMS's mapfile over the mosaics, QGIS styles beside
# them, a STAC catalog of the outputs and the HTML report's figures. The layers and their
# colours are one table (forestwatch.publish.layers.LAYERS): every entry whose file the
# workflow makes (a named output of rule mosaic, or the alert polygons) is published.

from forestwatch.publish.layers import published

PUBLISHED = published(
    [*rules.mosaic.output.keys(), *(["alert_polygons"] if hasattr(RUN, "alert_polygons") else [])]
)
RASTERS = [e.name for e in PUBLISHED if e.kind != "polygons"]
# the per-tile report layers (named outputs of rule tile_report), each an asset of its tile
REPORT_LAYERS = list(rules.tile_report.output.keys())


def get_published_files(wildcards):
    """Layer name -> the file it is drawn from (mosaic VRT, or the polygons' GeoPackage)."""
    return {
        e.name: RUN.alert_polygons() if e.kind == "polygons" else RUN.mosaic(e.name)
        for e in PUBLISHED
    }


def style_of(name):
    """The QGIS style beside a published layer's file."""
    if name == "alert_polygons":
        return RUN.alert_polygons_style()
    return RUN.mosaic_style(name)


rule wms_mapfile:
    input:
        unpack(get_published_files),
    output:
        RUN.wms_mapfile(),
    log:
        RUN.log("wms_mapfile"),
    conda:
        "../envs/forestwatch.yaml"
    params:
        cfg=config_slice("run_name", "grid.crs", "history.end", "fast_forward.until"),
    script:
        "../scripts/wms_mapfile.py"


rule qgis_styles:
    input:
        unpack(get_published_files),
    output:
        [style_of(e.name) for e in PUBLISHED],
    log:
        RUN.log("qgis_styles"),
    conda:
        "../envs/forestwatch.yaml"
    params:
        cfg=config_slice("history.end", "fast_forward.until"),
        styles={e.name: style_of(e.name) for e in PUBLISHED},
    script:
        "../scripts/qgis_styles.py"


def get_stac_inputs(wildcards):
    """Every tile's report COGs (not ancient: a daily run's new reports rebuild the
    catalog, with their new checksums), states, mosaics, styles, accuracy."""
    inputs = {
        "reports": [RUN.report(t, layer) for t in TILES for layer in REPORT_LAYERS],
        "states": [ancient(RUN.current_state(t)) for t in TILES],
        "mosaics": [RUN.mosaic(name) for name in RASTERS],
        "styles": rules.qgis_styles.output,
    }
    if get_truth_folder():
        inputs["accuracy"] = [RUN.accuracy("json"), RUN.accuracy("md")]
    if hasattr(RUN, "alert_polygons"):
        inputs["polygons"] = RUN.alert_polygons()
    return inputs


rule stac_catalog:
    input:
        unpack(get_stac_inputs),
    output:
        collection=RUN.stac_catalog(),
        tile_items=[RUN.stac_item(t) for t in TILES] + [RUN.stac_item("mosaic")],
    log:
        RUN.log("stac_catalog"),
    conda:
        "../envs/forestwatch.yaml"
    params:
        cfg=config_slice("run_name", "grid", "index", "monitor", "history"),
        tiles=TILES,
        layers=REPORT_LAYERS,
        rasters=RASTERS,
        source=config["stac"]["url"] or get_catalog() or None,
        run_dir=str(RUN.root),
    script:
        "../scripts/stac_catalog.py"


def get_daily_records(wildcards):
    """The daily runs' records on disk when the workflow starts (a daily run's own record
    is written after its Snakemake run: the next run's figure shows it)."""
    from pathlib import Path

    return sorted(str(p) for p in Path(RUN.runs()).glob("*/record.json"))


rule report_figures:
    input:
        mosaics=[RUN.mosaic(name) for name in RASTERS],
        dates=[RUN.report(t, "detection_date") for t in TILES],
        records=get_daily_records,
    output:
        quicklooks=[
            report(
                RUN.figure(f"quicklook_{name}"),
                category="Maps",
                caption="captions/quicklook.rst",
                labels={"layer": name},
            )
            for name in RASTERS
        ],
        alerts=report(
            RUN.figure("alerts_per_month"),
            category="Alerts",
            caption="captions/alerts_per_month.rst",
            labels={"figure": "new breaks per month"},
        ),
        alerts_table=report(
            RUN.figure_table("alerts_per_month"),
            category="Alerts",
            caption="captions/alerts_table.rst",
            labels={"figure": "table of new breaks per month"},
        ),
        history=report(
            RUN.figure("run_history"),
            category="Operations",
            caption="captions/run_history.rst",
            labels={"figure": "daily runs"},
        ),
    log:
        RUN.log("report_figures"),
    conda:
        "../envs/forestwatch.yaml"
    params:
        cfg=config_slice("history.end", "fast_forward.until"),
        rasters=RASTERS,
    script:
        "../scripts/report_figures.py"
