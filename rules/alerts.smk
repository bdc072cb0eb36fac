# Alert polygons and area statistics from the tiles' alert pieces (written by tile_report,
# listed in the tile reports index):
# a daily run rewrites the pieces of the tiles it changed, and these two rules join all
# pieces again without reading any raster (forestwatch.alerts).


rule alert_polygons:
    input:
        # every tile's pieces, listed in the index
        index=RUN.reports_index(),
    output:
        # read before it is replaced: the previous alerts pass their ids on
        update(RUN.alert_polygons()),
    log:
        RUN.log("alert_polygons"),
    params:
        cfg=config_slice("grid.resolution", "alerts.min_mapping_unit_ha"),
    run:
        run_job(jobs.alert_polygons, input, output, params, wildcards, threads, log)


rule alert_statistics:
    input:
        unpack(get_alert_statistics_input),
    output:
        **get_alert_statistics_output(),
    log:
        RUN.log("alert_statistics"),
    params:
        cfg=config_slice("grid.resolution", "grid.crs", "alerts.regions"),
    run:
        run_job(jobs.alert_statistics, input, output, params, wildcards, threads, log)
