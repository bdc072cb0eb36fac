# forestwatch: near-real-time forest disturbance monitoring from Sentinel-2 L2A with nrt.
#
#   snakemake --cores 2            run the whole chain on config/config.yaml
#   snakemake -n                   list the pending jobs, per tile
#
# Stages (rules/): archive -> grid -> forest_mask -> monitor (fit, fast_forward) -> report.
# A tile's monitoring state is written by rules/monitor.smk to
# results/<run_name>/state/{fitted,current}/<tile>.nc (format: src/forestwatch/state.py).

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"


wildcard_constraints:
    tile=TILE_ID_PATTERN,


include: "rules/archive.smk"
include: "rules/grid.smk"
include: "rules/forest_mask.smk"
include: "rules/monitor.smk"
include: "rules/report.smk"


# quick bookkeeping steps: under a cluster executor they run on the submitting host
localrules:
    all,
    tiles,
    mosaic,
    accuracy,


onstart:
    # cluster jobs: compile nrt's numba kernels once, here, into the (shared) numba cache
    # (NUMBA_CACHE_DIR), instead of once per job on a cold cache (~30 s each)
    if not workflow.local_exec:
        from forestwatch.monitoring import warm_numba_cache

        logger.info(f"numba cache warmed in {warm_numba_cache(config):.1f} s")


rule all:
    input:
        get_final_outputs,
    default_target: True
