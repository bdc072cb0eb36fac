# Publishing (forestwatch.publish): the WMS's mapfile over the mosaics, QGIS styles beside
# them, a STAC catalog of the outputs and the HTML report's figures. The layers and their
# colours are one table (forestwatch.publish.layers.LAYERS): every entry whose file the
# workflow makes (a named output of rule mosaic, or the alert polygons) is published
# (published_layers() in rules/common.smk).


rule wms_mapfile:
    input:
        unpack(get_published_files),
    output:
        RUN.wms_mapfile(),
    log:
        RUN.log("wms_mapfile"),
    params:
        cfg=config_slice("run_name", "grid.crs", "history.end", "fast_forward.until"),
    run:
        run_job(jobs.wms_mapfile, input, output, params, wildcards, threads, log)


rule qgis_styles:
    input:
        unpack(get_published_files),
    output:
        [style_of(e.name) for e in published_layers()],
    log:
        RUN.log("qgis_styles"),
    params:
        cfg=config_slice("history.end", "fast_forward.until"),
        styles={e.name: style_of(e.name) for e in published_layers()},
    run:
        run_job(jobs.qgis_styles, input, output, params, wildcards, threads, log)


rule stac_catalog:
    input:
        unpack(get_stac_inputs),
    output:
        collection=RUN.stac_catalog(),
        # read before they are replaced: a tile's item is kept while its files are older,
        # and a file's checksum reused (forestwatch.publish.stac_catalog)
        tile_items=[update(RUN.stac_item(t)) for t in TILES]
        + [update(RUN.stac_item("mosaic"))],
    log:
        RUN.log("stac_catalog"),
    params:
        cfg=config_slice("run_name", "grid", "index", "monitor", *CONSENSUS, "history"),
        tiles=TILES,
        layers=REPORT_LAYERS,
        reports={name: get_tile_reports(name) for name in REPORT_LAYERS},
        rasters=published_rasters(),
        source=config["stac"]["url"] or get_catalog() or None,
        item_ids=TILES + ["mosaic"],
        states=[RUN.current_state(t) for t in TILES],
    run:
        run_job(jobs.stac_catalog, input, output, params, wildcards, threads, log)


rule report_figures:
    input:
        mosaics=[RUN.mosaic(name) for name in published_rasters()],
        reports=RUN.reports_index(),
        records=get_daily_records,
        polygons=get_alert_polygons,
    output:
        quicklooks=[
            report(
                RUN.figure(f"quicklook_{name}"),
                category="Maps",
                caption="captions/quicklook.rst",
                labels={"layer": name},
            )
            for name in published_rasters()
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
    params:
        cfg=config_slice("history.end", "fast_forward.until"),
        rasters=published_rasters(),
        dates=get_tile_reports("detection_date"),
    run:
        run_job(jobs.report_figures, input, output, params, wildcards, threads, log)
