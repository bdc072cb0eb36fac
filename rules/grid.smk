# Study area -> tiles on the common grid.


rule tiles:
    output:
        RUN.tiles(),
    log:
        RUN.log("tiles"),
    conda:
        "../envs/forestwatch.yaml"
    params:
        cfg=config_slice("aoi", "grid"),
    script:
        "../scripts/tiles.py"
