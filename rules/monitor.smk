# Where a tile's forest mask and monitoring state are made and brought forward:
#   fit           history period          -> forest_mask/{tile}.tif + state/fitted/{tile}.nc
#   fast_forward  fitted state + new data -> state/current/{tile}.nc, up to fast_forward.until
# The fit job makes the mask too (one job and, with the history rule, one read of the
# history for both); the mask is an update() output, kept when it was made from the same
# inputs (forestwatch.forest_mask.kept_mask), so that a monitor change refits without a
# new mask and a mask change refits. 1 = forest (monitored), 0 = not forest.
# The current state is updated in place (update()): the daily run's update_tile brings it
# further, and a rerun of fast_forward continues from it, never from the fit again unless
# the fit itself changed (forestwatch.monitor.advance). Its one writer is
# forestwatch.state.TileStateStore.commit.


rule fit:
    input:
        catalog=ancient_catalog(),
        tree_cover=get_tree_cover(),
        model=MODEL_FILES[0] if MODEL_FILES else [],
        model_description=MODEL_FILES[1] if MODEL_FILES else [],
    output:
        mask=update(RUN.forest_mask("{tile}")),
        state=RUN.fitted_state("{tile}"),
    log:
        RUN.log("fit", "{tile}"),
    benchmark:
        RUN.benchmark("fit", "{tile}")
    threads: 2
    resources:
        mem_mb=3000,
    params:
        mask_cfg=forest_mask_config(),
        cfg=config_slice(
            "grid",
            *SOURCE,
            "history",
            "index",
            "monitor.class",
            "monitor.params",
            "monitor.fit",
            "monitor.block_size",
            *CONSENSUS,
        ),
    run:
        run_job(jobs.fit, input, output, params, wildcards, threads, log)


rule fast_forward:
    input:
        catalog=ancient_catalog(),
        state=RUN.fitted_state("{tile}"),
    output:
        update(RUN.current_state("{tile}")),
    log:
        RUN.log("fast_forward", "{tile}"),
    benchmark:
        RUN.benchmark("fast_forward", "{tile}")
    threads: 2
    resources:
        mem_mb=2000,
    params:
        cfg=config_slice(
            "run_name",
            "grid",
            *SOURCE,
            "index",
            "fast_forward",
            "monitor.regional_screening",
            *CONSENSUS,
            "operational.late_items",
            "operational.reprocessed_items",
            "operational.keep_states",
            "operational.retries",
            "operational.retry_delay_s",
            "alerts.process_fraction",
            "alerts.recovery_observations",
        ),
    run:
        run_job(jobs.fast_forward, input, output, params, wildcards, threads, log)
