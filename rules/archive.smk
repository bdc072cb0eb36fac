# The built-in synthetic Sentinel-2 L2A archive (the offline default), generated on first use.

TRUTH_LAYERS = [
    "forest",
    "land_cover",
    "disturbance_date",
    "disturbance_type",
    "canopy_loss",
    "tree_cover",
]


rule synthetic_archive:
    output:
        catalog=f"{SYNTHETIC}/items.json",
        collection=f"{SYNTHETIC}/collection.json",
        truth=expand(f"{SYNTHETIC}/truth/{{layer}}.tif", layer=TRUTH_LAYERS),
        summary=f"{SYNTHETIC}/truth/truth.json",
    log:
        f"{SYNTHETIC}/synthetic_archive.log",
    conda:
        "../envs/forestwatch.yaml"
    params:
        cfg=config_slice("aoi", "grid", "synthetic"),
    script:
        "../scripts/synthetic_archive.py"
