# Study area -> tiles on the common grid.


rule tiles:
    output:
        RUN.tiles(),
    params:
        cfg=config_slice("aoi", "grid"),
    log:
        RUN.log("tiles"),
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/tiles.py"
