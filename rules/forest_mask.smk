# Forest mask per tile: 1 = forest (monitored), 0 = not forest.


rule forest_mask:
    input:
        catalog=ancient_catalog(),
        tree_cover=get_tree_cover(),
    output:
        f"{RUN}/forest_mask/{{tile}}.tif",
    params:
        cfg=stage_config("grid", "stac", "synthetic", "history", "forest_mask"),
    threads: 2
    resources:
        mem_mb=2000,
    log:
        f"{LOGS}/forest_mask/{{tile}}.log",
    benchmark:
        f"{BENCH}/forest_mask/{{tile}}.tsv"
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/forest_mask.py"
