# Reports per tile, the mosaic VRTs, and (with a known truth) the accuracy summary.


rule tile_report:
    input:
        f"{RUN}/state/current/{{tile}}.nc",
    output:
        mask=f"{RUN}/reports/{{tile}}/mask.tif",
        detection_date=f"{RUN}/reports/{{tile}}/detection_date.tif",
    log:
        f"{LOGS}/tile_report/{{tile}}.log",
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/tile_report.py"


# A tile rewritten in place shows through an unchanged VRT, so the mosaic only depends on
# the set of tiles: ancient() keeps tile updates from rebuilding it.
rule mosaic:
    input:
        tiles=f"{RUN}/grid/tiles.gpkg",
        mask=[ancient(f) for f in get_tile_reports("mask")],
        detection_date=[ancient(f) for f in get_tile_reports("detection_date")],
    output:
        mask=f"{RUN}/mosaic/mask.vrt",
        detection_date=f"{RUN}/mosaic/detection_date.vrt",
    log:
        f"{LOGS}/mosaic.log",
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/mosaic.py"


rule accuracy:
    input:
        mask_vrt=f"{RUN}/mosaic/mask.vrt",
        date_vrt=f"{RUN}/mosaic/detection_date.vrt",
        reports=get_tile_reports("mask") + get_tile_reports("detection_date"),
        truth=get_truth_summary,
    output:
        json=f"{RUN}/accuracy/summary.json",
        markdown=report(
            f"{RUN}/accuracy/summary.md",
            category="Accuracy",
            caption="captions/accuracy.rst",
        ),
    params:
        cfg=stage_config("history", "fast_forward"),
    log:
        f"{LOGS}/accuracy.log",
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/accuracy.py"
