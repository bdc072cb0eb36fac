"""Where everything of a run lives: the one place that spells a path under
``results/<run_name>/``. The rules (``RUN`` in ``rules/common.smk``), the daily run and the
tests all ask a :class:`RunLayout`; nobody else composes these paths.

Each path says who writes it. Methods take a tile id (or a run id), or a Snakemake
wildcard such as ``"{tile}"``, which passes through unchanged::

    RunLayout("results/demo").current_state("{tile}")  # 'results/demo/state/current/{tile}.nc'
"""

from __future__ import annotations

import os.path
from pathlib import Path


def run_root(run_name: str) -> Path:
    """The folder of a run, relative to the working folder: ``results/<run_name>``."""
    return Path("results") / run_name


class RunLayout:
    """The folder layout of one run (:func:`run_root`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        # the root as Path spells it ("./results/x/" -> "results/x"), joined as strings:
        # the rules ask for every tile's paths, and pathlib's parsing was seconds of a
        # 10,000-tile plan
        self._root = str(self.root)

    def _p(self, *parts: str) -> str:
        return os.path.join(self._root, *parts)

    # -- grid and forest mask ----------------------------------------------------------
    def tiles(self) -> str:
        """GeoPackage of the tiles (rule ``tiles``)."""
        return self._p("grid", "tiles.gpkg")

    def forest_mask(self, tile: str) -> str:
        """uint8 GeoTIFF, 1 = forest (rule ``tile_state``, with the fitted state; kept while made
        from the same inputs, :func:`forestwatch.forest_mask.kept_mask`)."""
        return self._p("forest_mask", f"{tile}.tif")

    # -- monitoring states ---------------------------------------------------------------
    def fitted_state(self, tile: str) -> str:
        """The monitor fitted on the history (rule ``tile_state``, :func:`forestwatch.steps.fit`;
        read-only afterwards)."""
        return self._p("state", "fitted", f"{tile}.nc")

    def current_state(self, tile: str) -> str:
        """The monitor brought forward: written only by
        :meth:`forestwatch.state.TileStateStore.commit` (rule ``tile_state`` and the
        daily run's ``update_tile`` both go through it)."""
        return self._p("state", "current", f"{tile}.nc")

    def kept_states(self, tile: str) -> str:
        """Folder of previous current states, newest name last (``TileStateStore.commit``)."""
        return self._p("state", "history", tile)

    def unreadable_register(self, tile: str) -> str:
        """JSON: assets the daily run could not read yet, since when and how often
        (``TileStateStore``; see ``operational.unreadable_assets``)."""
        return self._p("state", "unreadable", f"{tile}.json")

    # -- reports -------------------------------------------------------------------------
    def report_folder(self, tile: str) -> str:
        """Folder of a tile's report layers (rule ``tile_report``)."""
        return self._p("reports", tile)

    def report(self, tile: str, layer: str) -> str:
        """Per-tile COG of a report layer (rule ``tile_report``)."""
        return report_layer(self.report_folder(tile), layer)

    def reports_index(self) -> str:
        """Which tiles' reports are complete, and where (rule ``tile_reports_index``,
        :class:`forestwatch.reports.TileReportsIndex`)."""
        return self._p("reports", "index.json")

    def mosaic(self, layer: str) -> str:
        """VRT over every tile's report layer (rule ``mosaic``)."""
        return self._p("mosaic", f"{layer}.vrt")

    # -- alerts --------------------------------------------------------------------------
    def alert_pieces(self, tile: str) -> str:
        """GeoPackage of a tile's open alerts as pieces of one status and month (rule
        ``tile_report``; :mod:`forestwatch.alerts.polygons`)."""
        return self._p("alerts", "tiles", f"{tile}.gpkg")

    def alert_polygons(self) -> str:
        """GeoPackage of the run's alerts with stable ids, layers ``alerts`` and
        ``history`` (rule ``alert_polygons``, which reads it before replacing it)."""
        return self._p("alerts", "alerts.gpkg")

    def alert_area(self, by: str) -> str:
        """CSV of mapped alert area, ``by`` ``tile`` or ``region`` (rule
        ``alert_statistics``)."""
        return self._p("alerts", f"area_by_{by}.csv")

    def accuracy(self, suffix: str) -> str:
        """Accuracy summary, ``json`` or ``md`` (rule ``accuracy``)."""
        return self._p("accuracy", f"summary.{suffix}")

    def mosaic_style(self, layer: str) -> str:
        """QGIS style (.qml) beside the mosaic VRT of a layer, so that QGIS opens the VRT
        with the WMS's colours (rule ``qgis_styles``)."""
        return self._p("mosaic", f"{layer}.qml")

    def alert_polygons_style(self) -> str:
        """QGIS style beside the alert polygons' GeoPackage (rule ``qgis_styles``), once
        the workflow writes them (``alert_polygons``)."""
        return str(Path(self.alert_polygons()).with_suffix(".qml"))

    # -- the strategy run (forestwatch.strategy) ----------------------------------------
    def strategy(self, name: str) -> str:
        """An output of the strategy run (rule ``strategy``): ``ranking.csv``,
        ``ranking.md``, ``tradeoff.png``, ``lags.png``, ``quicklooks.png``,
        ``recommended.yaml``."""
        return self._p("strategy", name)

    # -- publishing (forestwatch.publish) ------------------------------------------------
    def wms_mapfile(self) -> str:
        """MapServer mapfile of the run's WMS, over the mosaics (rule ``wms_mapfile``)."""
        return self._p("publish", "wms.map")

    def mapserver_config(self) -> str:
        """MapServer 8's config file naming the mapfile (``forestwatch serve``, when it
        starts)."""
        return self._p("publish", "mapserver.conf")

    def serve_pid(self) -> str:
        """PID of the running ``forestwatch serve`` (written by it, removed when it stops)."""
        return self._p("publish", "serve.pid")

    def stac_catalog(self) -> str:
        """STAC Collection of the run's outputs (rule ``stac_catalog``, which writes every
        file under ``stac/``)."""
        return self._p("stac", "collection.json")

    def stac_item(self, item_id: str) -> str:
        """STAC Item of one tile's products (``item_id`` = tile id) or of the run's mosaics
        (``mosaic``) (rule ``stac_catalog``)."""
        return self._p("stac", item_id, f"{item_id}.json")

    def figure(self, name: str) -> str:
        """PNG figure of the HTML report: ``quicklook_<layer>``, ``alerts_per_month``,
        ``run_history`` (rule ``report_figures``)."""
        return self._p("figures", f"{name}.png")

    def figure_table(self, name: str) -> str:
        """TSV table of the HTML report: ``alerts_per_month`` (rule ``report_figures``)."""
        return self._p("figures", f"{name}.tsv")

    # -- the daily run -------------------------------------------------------------------
    def lock(self) -> str:
        """The run lock (:mod:`forestwatch.runlock`): held by ``forestwatch daily`` and by a
        ``snakemake`` that executes jobs, so that one updates the states at a time."""
        return self._p(".lock")

    def runs(self) -> str:
        """Folder of the daily runs, one sub-folder per run id."""
        return self._p("runs")

    def run_folder(self, run: str) -> str:
        return self._p("runs", run)

    def discovery(self, run: str) -> str:
        """JSON: what a daily run's discovery found, per tile (``forestwatch.daily``)."""
        return self._p("runs", run, "discovery.json")

    def discovered_items(self, run: str) -> str:
        """STAC ItemCollection of every item a daily run's discovery found, once."""
        return self._p("runs", run, "items.json")

    def tile_record(self, run: str, tile: str) -> str:
        """JSON: what one tile's update did in a daily run (rule ``update_tile``)."""
        return self._p("runs", run, "tiles", f"{tile}.json")

    def run_record(self, run: str) -> str:
        """JSON: the whole daily run, from the tile records (``forestwatch daily``)."""
        return self._p("runs", run, "record.json")

    # -- logs and benchmarks -------------------------------------------------------------
    def log(self, rule: str, tile: str | None = None) -> str:
        return self._p("logs", rule, f"{tile}.log") if tile else self._p("logs", f"{rule}.log")

    def benchmark(self, rule: str, tile: str) -> str:
        return self._p("benchmarks", rule, f"{tile}.tsv")

    def update_log(self, run: str, tile: str) -> str:
        """Log of one tile's update in a daily run (rule ``update_tile``)."""
        return self._p("logs", "update_tile", run, f"{tile}.log")

    def update_benchmark(self, run: str, tile: str) -> str:
        return self._p("benchmarks", "update_tile", run, f"{tile}.tsv")

    def run_details(self, run: str) -> list[str]:
        """The per-tile and per-item files of a daily run that retention removes once the
        run is older than ``operational.keep_runs`` runs (:mod:`forestwatch.daily.retention`):
        its items, discovery, tile records, update logs and timings. Its ``record.json`` and
        daily log stay."""
        return [self.discovered_items(run), self.discovery(run),
                self._p("runs", run, "tiles"), self._p("logs", "update_tile", run),
                self._p("benchmarks", "update_tile", run)]

    def daily_log(self, run: str) -> str:
        """Log of a daily run's own steps: lock, discovery, record (``forestwatch daily``)."""
        return self._p("logs", "daily", f"{run}.log")


def report_layer(folder: str | Path, layer: str) -> str:
    """A report layer's COG in a tile's report folder (:meth:`RunLayout.report_folder`):
    what rule ``tile_report``'s script writes into its folder output."""
    return os.path.join(str(folder), f"{layer}.tif")


def fitted_state_of(state_file: str | Path) -> Path | None:
    """The fitted state of the tile whose current or kept state is ``state_file``, in the
    same run (:meth:`RunLayout.fitted_state`): a state brought forward takes its unchanged
    arrays from it (:mod:`forestwatch.state._netcdf`). ``None`` for a file elsewhere. The
    run's root and the tile are those for which :class:`RunLayout` spells this path."""
    path = Path(state_file)
    parents = path.parents
    if len(parents) > 2:  # <root>/state/current/<tile>.nc
        layout = RunLayout(parents[2])
        if Path(layout.current_state(path.stem)) == path:
            return Path(layout.fitted_state(path.stem))
    if len(parents) > 3:  # <root>/state/history/<tile>/<name>.nc
        layout, tile = RunLayout(parents[3]), path.parent.name
        if Path(layout.kept_states(tile)) == path.parent:
            return Path(layout.fitted_state(tile))
    return None


__all__ = ["RunLayout", "fitted_state_of", "report_layer", "run_root"]
