# Forest mask per tile: 1 = forest (monitored), 0 = not forest.

from forestwatch.forest_mask.model import ModelDescription, model_files


def get_model_files():
    """(model file, description file) for forest_mask.method 'model' with the ONNX backend,
    else (). Both are inputs, so a changed model or description reruns the masks."""
    fm = config["forest_mask"]
    if fm["method"] != "model" or fm["model"]["backend"] != "onnx":
        return ()
    return tuple(map(str, model_files(fm["model"], source=config["stac"]["source"])))


MODEL_FILES = get_model_files()


def forest_mask_config():
    """The config the rule reads, as its params. Methods rule and file get the sections
    they always had (the model section left out, so that adding it reran no mask); a model
    gets its own section and the model file's SHA-256 from its description, so that
    another model reruns the masks even when its file keeps its name and timestamp."""
    cfg = config_slice("grid", *SOURCE, "history", "forest_mask")
    model = cfg["forest_mask"].pop("model")
    if cfg["forest_mask"]["method"] == "model":
        cfg["forest_mask"] = {"method": "model", "model": model}
        if MODEL_FILES:
            cfg["forest_mask"]["model_sha256"] = ModelDescription.read(
                MODEL_FILES[1]
            ).sha256
    return cfg


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
