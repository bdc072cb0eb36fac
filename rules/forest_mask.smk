# Forest mask per tile: 1 = forest (monitored), 0 = not forest.


rule forest_mask:
    input:
        catalog=ancient_catalog(),
        tree_cover=get_tree_cover(),
        model=MODEL_FILES[0] if MODEL_FILES else [],
        model_description=MODEL_FILES[1] if MODEL_FILES else [],
    output:
        RUN.forest_mask("{tile}"),
    log:
        RUN.log("forest_mask", "{tile}"),
    benchmark:
        RUN.benchmark("forest_mask", "{tile}")
    conda:
        "../envs/forestwatch.yaml"
    threads: 2
    resources:
        mem_mb=2000,
    params:
        cfg=forest_mask_config(),
    script:
        "../scripts/forest_mask.py"
