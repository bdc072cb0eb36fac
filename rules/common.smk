# Config validation, the tile list, and input functions shared by every stage.

import copy

from forestwatch.config import ConfigError, validate_config
from forestwatch.grid import TILE_ID_PATTERN, make_tiles

try:
    _validated = validate_config(config)
except ConfigError as err:
    raise WorkflowError(f"Invalid configuration: {err}") from None
config.clear()
config.update(_validated)

RUN = f"results/{config['run_name']}"
LOGS = f"{RUN}/logs"
BENCH = f"{RUN}/benchmarks"
SYNTHETIC = config["synthetic"]["folder"]

# tiles are derived from aoi + grid alone, so the DAG is known without a checkpoint
TILES = [t.id for t in make_tiles(config)]


def stage_config(*sections):
    """The config sections one stage depends on, passed as params; changing any of them
    reruns that stage (and what depends on it), and nothing else."""
    return {s: copy.deepcopy(config[s]) for s in sections}


def get_catalog():
    """The local STAC ItemCollection to search, or nothing for a STAC API."""
    source = config["stac"]["source"]
    if source == "synthetic":
        return f"{SYNTHETIC}/items.json"
    if source == "local":
        return config["stac"]["catalog"]
    return []


def ancient_catalog():
    """The catalog as an input that never triggers reruns by its timestamp: in operation it
    grows every day, and new acquisitions are applied by `forestwatch daily`, not by
    refitting. Pointing stac.catalog at another file still reruns (it is in params)."""
    catalog = get_catalog()
    return ancient(catalog) if catalog else []


def get_tree_cover():
    """The tree-cover raster for forest_mask.method 'file'."""
    if config["forest_mask"]["method"] != "file":
        return []
    path = config["forest_mask"]["file"]["path"]
    return path if path else f"{SYNTHETIC}/truth/tree_cover.tif"


def get_truth_folder():
    """Truth rasters for the accuracy check, when the data has a known truth."""
    if config["accuracy"]["truth_folder"]:
        return config["accuracy"]["truth_folder"]
    if config["stac"]["source"] == "synthetic":
        return f"{SYNTHETIC}/truth"
    return None


def get_truth_summary(wildcards):
    return f"{get_truth_folder()}/truth.json"


def get_tile_reports(layer):
    return expand(f"{RUN}/reports/{{tile}}/{layer}.tif", tile=TILES)


def get_final_outputs(wildcards):
    outputs = [
        f"{RUN}/grid/tiles.gpkg",
        f"{RUN}/mosaic/mask.vrt",
        f"{RUN}/mosaic/detection_date.vrt",
    ]
    if get_truth_folder():
        outputs.append(f"{RUN}/accuracy/summary.json")
    return outputs
