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
    params:
        cfg=config_slice("aoi", "grid", "synthetic"),
    run:
        run_job(jobs.synthetic_archive, input, output, params, wildcards, threads, log)
