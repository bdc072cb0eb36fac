# Reports per tile, the mosaic VRTs, and (with a known truth) the accuracy summary.


# The layers are one folder per tile (directory output): 11 declared files per tile cost
# Snakemake's planning ~8 % of a 2,500-tile dry-run (BENCHMARKS.md); their paths are
# RUN.report(tile, layer), forestwatch.layout.report_layer inside the folder.
rule tile_report:
    input:
        unpack(get_tile_report_input),
    output:
        layers=directory(RUN.report_folder("{tile}")),
        pieces=RUN.alert_pieces("{tile}"),
    log:
        RUN.log("tile_report", "{tile}"),
    params:
        cfg=config_slice("alerts.confidence_half"),
    run:
        run_job(jobs.tile_report, input, output, params, wildcards, threads, log)


# Which tiles' reports are complete: the one input of the rules over every tile
# (forestwatch.reports.TileReportsIndex). Rewritten when any tile's report is, and (params)
# when the set of tiles changes.
rule tile_reports_index:
    input:
        pieces=get_tile_reports_written(),
    output:
        RUN.reports_index(),
    log:
        RUN.log("tile_reports_index"),
    params:
        tiles=TILES,
        folders=[RUN.report_folder(t) for t in TILES],
    run:
        run_job(jobs.tile_reports_index, input, output, params, wildcards, threads, log)


# A tile rewritten in place shows through an unchanged VRT, so the mosaic only depends on
# the set of tiles: ancient() keeps tile updates from rebuilding it.
rule mosaic:
    input:
        tiles=RUN.tiles(),
        reports=ancient(RUN.reports_index()),
    output:
        **{name: RUN.mosaic(name) for name in REPORT_LAYERS},
    log:
        RUN.log("mosaic"),
    params:
        tiles_by_layer={name: get_tile_reports(name) for name in REPORT_LAYERS},
    run:
        run_job(jobs.mosaic, input, output, params, wildcards, threads, log)


rule accuracy:
    input:
        mask_vrt=RUN.mosaic("mask"),
        date_vrt=RUN.mosaic("detection_date"),
        status_vrt=RUN.mosaic("alert_status"),
        first_vrt=RUN.mosaic("first_detection_date"),
        reports=RUN.reports_index(),
        truth=get_truth_summary,
    output:
        json=RUN.accuracy("json"),
        markdown=report(
            RUN.accuracy("md"),
            category="Accuracy",
            caption="captions/accuracy.rst",
        ),
    log:
        RUN.log("accuracy"),
    params:
        cfg=config_slice("history", "fast_forward", "accuracy"),
    run:
        run_job(jobs.accuracy, input, output, params, wildcards, threads, log)
