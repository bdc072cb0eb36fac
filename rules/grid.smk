# Study area -> tiles on the common grid.


rule tiles:
    output:
        RUN.tiles(),
    log:
        RUN.log("tiles"),
    params:
        cfg=config_slice("aoi", "grid"),
    run:
        run_job(jobs.tiles, input, output, params, wildcards, threads, log)
