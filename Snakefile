# forestwatch: near-real-time forest disturbance monitoring from Sentinel-2 L2A with nrt.
#
#   snakemake --cores 2            run the whole chain on config/config.yaml
#   snakemake -n                   list the pending jobs, per tile
#
# Stages (rules/): archive -> grid -> monitor (tile_state: forest mask, fitted state,
# fast-forward) -> report -> alerts (polygons, area statistics) -> publish (WMS mapfile,
# QGIS styles, STAC catalog, report figures); daily (update_tile) is run by `forestwatch
# daily`; strategy (`snakemake strategy`) ranks monitoring candidates. Every path under
# results/<run_name>/ comes from forestwatch.layout.RunLayout (RUN in rules/common.smk).
# A tile's mask and state: forest_mask/<tile>.tif and state/fitted/<tile>.nc are written
# by rule tile_state (forestwatch.steps.fit), state/current/<tile>.nc only by
# forestwatch.state.TileStateStore (rules tile_state and update_tile).

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"


wildcard_constraints:
    tile=TILE_ID_PATTERN,
    run=r"\d{8}T\d{12}_\d{4}-\d{2}-\d{2}",


include: "rules/archive.smk"
include: "rules/grid.smk"
include: "rules/monitor.smk"
include: "rules/report.smk"
include: "rules/alerts.smk"
include: "rules/daily.smk"
include: "rules/publish.smk"
include: "rules/strategy.smk"


# quick bookkeeping steps: under a cluster executor they run on the submitting host
localrules:
    all,
    tiles,
    tile_reports_index,
    mosaic,
    accuracy,
    alert_polygons,
    alert_statistics,
    wms_mapfile,
    qgis_styles,
    stac_catalog,
    report_figures,


onstart:
    # one process at a time changes this run's states: take the run lock (a daily run
    # that started this Snakemake holds it already); dry-runs never get here
    from forestwatch.runlock import RunLocked, lock_for_workflow

    try:
        lock_for_workflow(RUN.lock(), wait_s=config["operational"]["lock_wait_s"])
    except RunLocked as err:
        raise WorkflowError(str(err)) from None
    # cluster jobs: compile nrt's numba kernels once, here, into the (shared) numba cache
    # (NUMBA_CACHE_DIR), instead of once per job on a cold cache (~30 s each)
    if not workflow.local_exec:
        from forestwatch.monitor import warm_numba_cache

        logger.info(f"numba cache warmed in {warm_numba_cache(config):.1f} s")


# the process exits right after the last job (Snakemake's last timer, the final garbage
# collection of what the jobs left: forestwatch.workflow.end_of_run)
onsuccess:
    end_of_run()


onerror:
    end_of_run()


rule all:
    default_target: True
    input:
        get_final_outputs,
