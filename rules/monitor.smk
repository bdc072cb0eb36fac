# Where a tile's monitoring state is made and moved forward:
#   fit           history period          -> state/fitted/{tile}.nc
#   fast_forward  fitted state + new data -> state/current/{tile}.nc
# Both files are written atomically (forestwatch.state.save_state).


rule fit:
    input:
        catalog=ancient_catalog(),
        mask=f"{RUN}/forest_mask/{{tile}}.tif",
    output:
        f"{RUN}/state/fitted/{{tile}}.nc",
    params:
        cfg=stage_config("grid", "stac", "synthetic", "history", "index", "monitor"),
    threads: 2
    resources:
        mem_mb=3000,
    log:
        f"{LOGS}/fit/{{tile}}.log",
    benchmark:
        f"{BENCH}/fit/{{tile}}.tsv"
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/fit.py"


rule fast_forward:
    input:
        catalog=ancient_catalog(),
        state=f"{RUN}/state/fitted/{{tile}}.nc",
    output:
        f"{RUN}/state/current/{{tile}}.nc",
    params:
        cfg=stage_config("grid", "stac", "synthetic", "index", "fast_forward"),
    threads: 2
    resources:
        mem_mb=2000,
    log:
        f"{LOGS}/fast_forward/{{tile}}.log",
    benchmark:
        f"{BENCH}/fast_forward/{{tile}}.tsv"
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/fast_forward.py"
