# Reports per tile, the mosaic VRTs, and (with a known truth) the accuracy summary.


rule tile_report:
    input:
        unpack(get_tile_report_input),
    output:
        mask=RUN.report("{tile}", "mask"),
        detection_date=RUN.report("{tile}", "detection_date"),
    log:
        RUN.log("tile_report", "{tile}"),
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/tile_report.py"


# A tile rewritten in place shows through an unchanged VRT, so the mosaic only depends on
# the set of tiles: ancient() keeps tile updates from rebuilding it.
rule mosaic:
    input:
        tiles=RUN.tiles(),
        mask=[ancient(f) for f in get_tile_reports("mask")],
        detection_date=[ancient(f) for f in get_tile_reports("detection_date")],
    output:
        mask=RUN.mosaic("mask"),
        detection_date=RUN.mosaic("detection_date"),
    log:
        RUN.log("mosaic"),
    conda:
        "../envs/forestwatch.yaml"
    script:
        "../scripts/mosaic.py"


rule accuracy:
    input:
        mask_vrt=RUN.mosaic("mask"),
        date_vrt=RUN.mosaic("detection_date"),
        reports=get_tile_reports("mask") + get_tile_reports("detection_date"),
        truth=get_truth_summary,
    output:
        json=RUN.accuracy("json"),
        markdown=report(
            RUN.accuracy("md"),
            category="Accuracy",
            caption="captions/accuracy.rst",
        ),
    log:
        RUN.log("accuracy"),
    conda:
        "../envs/forestwatch.yaml"
    params:
        cfg=config_slice("history", "fast_forward", "accuracy"),
    script:
        "../scripts/accuracy.py"
