# Choosing the monitoring strategy (`snakemake strategy`): every candidate of the strategy
# section fitted and monitored on the test area's samples, bands read once per tile, and
# ranked (forestwatch.strategy). Not part of the default target.


rule strategy:
    input:
        unpack(get_strategy_input),
    output:
        ranking_csv=RUN.strategy("ranking.csv"),
        ranking_md=report(
            RUN.strategy("ranking.md"),
            category="Strategy",
            caption="captions/strategy.rst",
        ),
        tradeoff=report(
            RUN.strategy("tradeoff.png"),
            category="Strategy",
            caption="captions/strategy.rst",
        ),
        lags=RUN.strategy("lags.png"),
        quicklooks=report(
            RUN.strategy("quicklooks.png"),
            category="Strategy",
            caption="captions/strategy.rst",
        ),
        recommended=RUN.strategy("recommended.yaml"),
    log:
        RUN.log("strategy"),
    benchmark:
        RUN.benchmark("strategy", "all")
    threads: 2
    resources:
        mem_mb=4000,
    params:
        cfg=config_slice(
            "aoi",
            "grid",
            *SOURCE,
            "index",
            "history",
            "monitor",
            "fast_forward",
            "alerts",
            "strategy",
        ),
        tiles=lambda wildcards: get_strategy_tiles(),
        truth_dir=lambda wildcards: get_strategy_truth(),
    run:
        run_job(jobs.strategy, input, output, params, wildcards, threads, log)
