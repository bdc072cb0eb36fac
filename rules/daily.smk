# The daily run's tile updates. `forestwatch daily` takes the run lock, discovers the new
# acquisitions (runs/{run}/discovery.json, items.json), then runs Snakemake with
# `--config daily_run={run}` on the tile records below: one job per tile with work, and
# the reports of those tiles after them (rules/report.smk).


rule update_tile:
    input:
        catalog=ancient_catalog(),
        discovery=RUN.discovery("{run}"),
        discovered=RUN.discovered_items("{run}"),
        # after the tile's fast-forward (a tile new to the AOI is fitted first); its
        # timestamp is the daily run's own doing and triggers nothing
        state=ancient(RUN.current_state("{tile}")),
    output:
        RUN.tile_record("{run}", "{tile}"),
    log:
        RUN.update_log("{run}", "{tile}"),
    benchmark:
        RUN.update_benchmark("{run}", "{tile}")
    # one thread: a day or two per tile is a few reads; tiles side by side use the cores
    # better (BENCHMARKS.md, the daily run at scale)
    threads: 1
    resources:
        mem_mb=3000,
    params:
        cfg=config_slice(
            "run_name",
            "grid",
            *SOURCE,
            "index",
            "operational",
            "monitor.regional_screening",
            *CONSENSUS,
            "alerts.process_fraction",
            "alerts.recovery_observations",
        ),
    run:
        run_job(jobs.update_tile, input, output, params, wildcards, threads, log)
