# Study area -> tiles on the common grid.


rule tiles:
    output:
        f"{RUN}/grid/tiles.gpkg",
    params:
        cfg=stage_config("aoi", "grid"),
    log:
        f"{LOGS}/tiles.log",
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/tiles.py"
