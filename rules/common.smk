# Config validation, the run layout, the tile list, and input functions shared by every stage.

import copy
import functools

from forestwatch.alerts.layers import ALERT_REPORT_LAYERS
from forestwatch.config import ConfigError, validate_config
from forestwatch.daily.discovery import Discovery
from forestwatch.forest_mask.model import ModelDescription, model_files
from forestwatch.grid import TILE_ID_PATTERN, make_tiles
from forestwatch.layout import RunLayout, run_root
from forestwatch.shared_search import share_searches

# every rule's run: block is `run_job(jobs.<rule>, ...)`: the job runs in this process
# (a thread, with force-use-threads from profiles/default), not in a new Python
from forestwatch import jobs
from forestwatch.workflow import end_of_run, run_job, start_of_run

start_of_run()  # before the plan: fewer garbage collections walking it

try:
    _validated = validate_config(config)
except ConfigError as err:
    raise WorkflowError(f"Invalid configuration: {err}") from None
config.clear()
config.update(_validated)

# every path under results/<run_name>/ comes from here (forestwatch.layout)
RUN = RunLayout(run_root(config["run_name"]))
SYNTHETIC = config["synthetic"]["folder"]

# tiles are derived from aoi + grid alone, so the DAG is known without a checkpoint
TILE_GRID = make_tiles(config)
TILES = [t.id for t in TILE_GRID]

# the tile jobs of this process search a STAC API once per block of tiles and period
# (forestwatch.shared_search); a job on a cluster node is one tile's, searched on its own
if config["stac"]["source"] == "stac_api" and not workflow.remote_exec:
    share_searches(TILE_GRID)

# the configuration of the data source: the synthetic archive's settings only matter when
# it is the source
SOURCE = ["stac", "synthetic"] if config["stac"]["source"] == "synthetic" else ["stac"]

# the consensus section, for the rules that run the monitors (tile_state,
# update_tile), only when it has members: a config without one keeps these rules' params,
# so its states are not refitted
CONSENSUS = ["consensus"] if config["consensus"]["members"] else []

# set by `forestwatch daily` (--config daily_run=<run id>): the run whose tile updates this
# Snakemake run makes, and the tiles its discovery gave work
DAILY_RUN = config["daily_run"]
# (a set: every tile's report input asks whether it is one)
DAILY_TILES = (
    frozenset(Discovery.read(RUN.discovery(DAILY_RUN)).tiles)
    if DAILY_RUN
    else frozenset()
)


def config_slice(*keys):
    """The config keys a rule reads, given as its params, so that changing any of them
    reruns that rule (and what depends on it) and nothing else. Dotted keys pick one
    entry of a section ("operational.keep_states")."""
    out = {}
    for key in keys:
        *parents, leaf = key.split(".")
        src, dst = config, out
        for part in parents:
            src, dst = src[part], dst.setdefault(part, {})
        dst[leaf] = copy.deepcopy(src[leaf])
    return out


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


def get_truth_folder():
    """Truth rasters for the accuracy check, when the data has a known truth."""
    if config["accuracy"]["truth_folder"]:
        return config["accuracy"]["truth_folder"]
    if config["stac"]["source"] == "synthetic":
        return f"{SYNTHETIC}/truth"
    return None


def get_truth_summary(wildcards):
    return f"{get_truth_folder()}/truth.json"


def get_tile_report_input(wildcards):
    """The tile's current state; in a daily run also its update, so that the report is
    made after it (and only for the tiles that had work)."""
    inputs = {"state": RUN.current_state(wildcards.tile)}
    if wildcards.tile in DAILY_TILES:
        inputs["tile_update"] = RUN.tile_record(DAILY_RUN, wildcards.tile)
    return inputs


#: every per-tile report layer, each mosaicked into one VRT
REPORT_LAYERS = ["mask", "detection_date", *ALERT_REPORT_LAYERS]


@functools.cache
def get_tile_reports(layer):
    """Every tile's COG of a report layer, listed once per layer (several rules' params
    ask for the same lists; 10,000 tiles x 9 layers of paths each time cost seconds)."""
    return [RUN.report(tile, layer) for tile in TILES]


def get_tile_reports_written():
    """One file per tile that stands for all of its report layers: tile_report writes its
    alert pieces last. Only rule tile_reports_index takes them as input; the rules over
    every tile take its index (9 layers x 10,000 tiles as inputs cost minutes of DAG, and
    one file per tile for each of six rules still half of a 10,000-tile plan)."""
    return [RUN.alert_pieces(tile) for tile in TILES]


def get_alert_statistics_input(wildcards):
    inputs = {"index": RUN.reports_index()}
    if config["alerts"]["regions"]["path"]:
        inputs["regions"] = config["alerts"]["regions"]["path"]
    return inputs


def get_alert_statistics_output():
    outputs = {"by_tile": RUN.alert_area("tile")}
    if config["alerts"]["regions"]["path"]:
        outputs["by_region"] = RUN.alert_area("region")
    return outputs


def get_final_outputs(wildcards):
    """Everything `snakemake` (and each daily run's Snakemake run) brings up to date: the
    mosaics, the alert polygons and statistics, the accuracy summary when there is a
    truth, and what rules/publish.smk makes from them (the WMS mapfile, the QGIS styles,
    the STAC catalog, the report figures)."""
    outputs = [RUN.tiles(), *(RUN.mosaic(name) for name in REPORT_LAYERS)]
    outputs += [RUN.alert_polygons(), *get_alert_statistics_output().values()]
    if get_truth_folder():
        outputs.append(RUN.accuracy("json"))
    outputs += [
        *rules.wms_mapfile.output,
        *rules.qgis_styles.output,
        # the collection only: asking for every tile's item too would make Snakemake
        # compare each of them with the rule's inputs (10,000 tiles: minutes of DAG)
        rules.stac_catalog.output.collection,
        *rules.report_figures.output,
    ]
    return outputs


# -- publishing (rules/publish.smk) -------------------------------------------------------


def published_layers():
    """The table's layers (forestwatch.publish.layers.LAYERS) whose file the workflow
    makes: a named output of rule mosaic, or the alert polygons."""
    from forestwatch.publish.layers import published

    made = list(rules.mosaic.output.keys())
    if hasattr(RUN, "alert_polygons"):
        made.append("alert_polygons")
    return published(made)


def published_rasters():
    return [e.name for e in published_layers() if e.kind != "polygons"]


def get_published_files(wildcards):
    """Layer name -> the file it is drawn from (mosaic VRT, or the polygons' GeoPackage).
    The mapfile and the styles name the polygons' file but do not read it: ancient(), so
    that the polygons' rewrite in every daily run rewrites neither."""
    return {
        e.name: (
            ancient(RUN.alert_polygons())
            if e.kind == "polygons"
            else RUN.mosaic(e.name)
        )
        for e in published_layers()
    }


def style_of(name):
    """The QGIS style beside a published layer's file."""
    if name == "alert_polygons":
        return RUN.alert_polygons_style()
    return RUN.mosaic_style(name)


def get_stac_inputs(wildcards):
    """The tile reports index (not ancient: a daily run's new reports rebuild the
    catalog, with their new checksums), the mosaics, styles, accuracy, polygons and
    statistics."""
    inputs = {
        # the tiles' reports, written after their states (the layers' and states' paths
        # are the rule's params)
        "reports_index": RUN.reports_index(),
        "mosaics": [RUN.mosaic(name) for name in published_rasters()],
        "styles": rules.qgis_styles.output,
    }
    if get_truth_folder():
        inputs["accuracy"] = [RUN.accuracy("json"), RUN.accuracy("md")]
    inputs["polygons"] = RUN.alert_polygons()
    inputs["statistics"] = list(get_alert_statistics_output().values())
    return inputs


def get_alert_polygons(wildcards):
    """The alert polygons, when the workflow makes them (the report's alerts per month)."""
    return [RUN.alert_polygons()]


def get_daily_records(wildcards):
    """The daily runs' records on disk when the workflow starts. A daily run's own record
    is written after its Snakemake run, so it shows from the next rebuild of the figures
    on. ancient(): a new record alone reruns nothing (after a daily run, `snakemake -n`
    plans nothing); the figures are redrawn when the tiles' reports change."""
    from pathlib import Path

    return [ancient(str(p)) for p in sorted(Path(RUN.runs()).glob("*/record.json"))]


def get_strategy_tiles():
    """The strategy run's test tiles (strategy.tiles / strategy.bbox, else every tile)."""
    from forestwatch.strategy.run import test_area

    try:
        return [t.id for t in test_area(config)]
    except ConfigError as err:
        raise WorkflowError(f"Invalid configuration: {err}") from None


def get_strategy_truth():
    """The truth folder the strategy scores against when no reference file is given."""
    return None if config["strategy"]["reference"]["path"] else get_truth_folder()


def get_strategy_input(wildcards):
    """Forest masks of the test tiles, the catalog, and the reference samples (a file) or
    the synthetic truth."""
    ref = config["strategy"]["reference"]
    inputs = {
        "catalog": ancient_catalog(),
        "masks": [RUN.forest_mask(t) for t in get_strategy_tiles()],
    }
    if ref["path"]:
        inputs["reference"] = ref["path"]
        if ref["nrt_validate_db"]:
            inputs["nrt_validate_db"] = ref["nrt_validate_db"]
    elif get_truth_folder():
        inputs["truth"] = f"{get_truth_folder()}/truth.json"
    return inputs
