# Where a tile's forest mask and monitoring state are made and brought forward, in one job:
#   tile_state  history period + data since -> forest_mask/{tile}.tif,
#               state/fitted/{tile}.nc, state/current/{tile}.nc (up to fast_forward.until)
# One job per tile, not a fit job and a fast-forward job: a third fewer jobs to plan
# (BENCHMARKS.md, the 10,000-tile dry-run), one search and start-up less per tile.
# All three outputs are update() outputs, each kept when it still holds:
# - the mask when made from the same inputs (forestwatch.forest_mask.kept_mask): a
#   monitor change refits without a new mask, a mask change refits;
# - the fitted state when made from the same fit config, mask and history items
#   (forestwatch.monitor.fit_key, in its ledger): a change of fast_forward, or a forced
#   rerun, does not fit again;
# - the current state is brought further from where it is, never back, and from the fit
#   again only when the fit changed (forestwatch.monitor.advance). Its one writer is
#   forestwatch.state.TileStateStore.commit; the daily run's update_tile brings it further.


rule tile_state:
    input:
        catalog=ancient_catalog(),
        tree_cover=get_tree_cover(),
        model=MODEL_FILES[0] if MODEL_FILES else [],
        model_description=MODEL_FILES[1] if MODEL_FILES else [],
    output:
        mask=update(RUN.forest_mask("{tile}")),
        fitted=update(RUN.fitted_state("{tile}")),
        current=update(RUN.current_state("{tile}")),
    log:
        RUN.log("tile_state", "{tile}"),
    benchmark:
        RUN.benchmark("tile_state", "{tile}")
    threads: 2
    resources:
        mem_mb=4000,
    params:
        mask_cfg=forest_mask_config(),
        fit_cfg=config_slice(
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
        forward_cfg=config_slice(
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
        run_job(jobs.tile_state, input, output, params, wildcards, threads, log)
