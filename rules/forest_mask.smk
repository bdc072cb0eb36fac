# Forest mask per tile: 1 = forest (monitored), 0 = not forest.


rule forest_mask:
    input:
        catalog=ancient_catalog(),
        tree_cover=get_tree_cover(),
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
        cfg=config_slice("grid", *SOURCE, "history", "forest_mask"),
    script:
        "../scripts/forest_mask.py"
