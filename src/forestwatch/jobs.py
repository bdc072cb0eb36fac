"""The workflow's jobs: one function per rule, called by that rule's ``run:`` block
(rules/*.smk) through :func:`forestwatch.workflow.run_job`, in the Snakemake process.

Each function only maps the rule's names (``job.input``, ``job.output``, ``job.params``,
``job.wildcards``, ``job.threads``) onto one :mod:`forestwatch.steps` function's keyword
arguments; the work and its docstrings are in the steps.

Why in the Snakemake process and not as ``script:`` jobs: a script job is a new Python
that imports Snakemake, numpy, GDAL, xarray and nrt again and unpickles its job (~2.5 s),
as long as a demo tile's whole fast-forward; a tile paid it three times and a run of 4
tiles 21 times (BENCHMARKS.md, "Jobs in the Snakemake process"). With
``force-use-threads`` (profiles/default) Snakemake runs ``run:`` jobs in its own threads:
the imports are paid once per run, and the numeric work (numpy, GDAL, numba) releases the
GIL. The two jobs that fork workers of their own run in a new process
(:func:`forestwatch.workflow.own_process`). Under SLURM the plugin starts one Snakemake
per job on the node (also inside a batch); it runs the job itself, with no script
interpreter after it.
"""

from __future__ import annotations

from pathlib import Path

from .workflow import Job, own_process


def _steps():
    from . import steps  # imported by the first job, not when Snakemake parses the rules

    return steps


@own_process  # forks its workers
def synthetic_archive(job: Job) -> None:
    _steps().synthetic_archive(cfg=job.params.cfg, items_path=job.output.catalog)


def tiles(job: Job) -> None:
    _steps().tiles(cfg=job.params.cfg, out=job.output[0])


def tile_state(job: Job) -> None:
    from .layout import run_root

    _steps().tile_state(fit_cfg=job.params.fit_cfg, forward_cfg=job.params.forward_cfg,
                        mask_cfg=job.params.mask_cfg, tile_id=job.wildcards.tile,
                        catalog=job.input.catalog or None,
                        run_dir=run_root(job.params.forward_cfg["run_name"]),
                        mask_out=job.output.mask, fitted_out=job.output.fitted,
                        current_out=job.output.current,
                        tree_cover=job.input.tree_cover or None, model=job.input.model or None,
                        model_description=job.input.model_description or None,
                        threads=job.threads)


def update_tile(job: Job) -> None:
    from .layout import run_root

    _steps().update_tile(cfg=job.params.cfg, tile_id=job.wildcards.tile,
                         run_dir=run_root(job.params.cfg["run_name"]), run=job.wildcards.run,
                         catalog=job.input.catalog or None, out=job.output[0],
                         threads=job.threads)


def tile_report(job: Job) -> None:
    from .alerts.layers import ALERT_REPORT_LAYERS
    from .layout import report_layer

    folder = job.output.layers
    _steps().tile_report(cfg=job.params.cfg, tile_id=job.wildcards.tile,
                         state_in=job.input.state, mask_out=report_layer(folder, "mask"),
                         date_out=report_layer(folder, "detection_date"),
                         alert_out={name: report_layer(folder, name)
                                    for name in ALERT_REPORT_LAYERS},
                         pieces_out=job.output.pieces)


def mosaic(job: Job) -> None:
    layers = list(job.output.keys())
    _steps().mosaic(tiles_by_layer={name: list(job.params.tiles_by_layer[name])
                                    for name in layers},
                    vrts={name: job.output[name] for name in layers})


def accuracy(job: Job) -> None:
    _steps().accuracy(cfg=job.params.cfg, mask_vrt=job.input.mask_vrt,
                      date_vrt=job.input.date_vrt, truth_dir=str(Path(job.input.truth).parent),
                      json_out=job.output.json, md_out=job.output.markdown,
                      status_vrt=job.input.status_vrt, first_vrt=job.input.first_vrt)


def tile_reports_index(job: Job) -> None:
    _steps().tile_reports_index(tiles=list(job.params.tiles), folders=list(job.params.folders),
                                pieces=list(job.input.pieces), out=job.output[0])


def _indexed_pieces(index: str) -> list[str]:
    """Every tile's alert pieces, from the tile reports index."""
    from .reports import TileReportsIndex

    return list(TileReportsIndex.read(index).pieces.values())


def alert_polygons(job: Job) -> None:
    _steps().alert_polygons(cfg=job.params.cfg, pieces=_indexed_pieces(job.input.index),
                            out=job.output[0])


def alert_statistics(job: Job) -> None:
    _steps().alert_statistics(cfg=job.params.cfg, pieces=_indexed_pieces(job.input.index),
                              by_tile_out=job.output.by_tile,
                              by_region_out=job.output.get("by_region"))


def wms_mapfile(job: Job) -> None:
    _steps().wms_mapfile(cfg=job.params.cfg, layers=dict(job.input.items()),
                         out=job.output[0])


def qgis_styles(job: Job) -> None:
    _steps().qgis_styles(cfg=job.params.cfg, layers=dict(job.input.items()),
                         styles=job.params.styles)


def stac_catalog(job: Job) -> None:
    params, inputs = job.params, job.input
    reports = params.reports  # layer -> every tile's file, in the order of params.tiles
    tiles = {t: {layer: reports[layer][k] for layer in params.layers}
             for k, t in enumerate(params.tiles)}
    extras = {}
    for key in ("styles", "accuracy", "polygons", "statistics"):
        if key in inputs.keys():
            files = [inputs[key]] if isinstance(inputs[key], str) else inputs[key]
            extras.update({Path(p).name.replace(".", "_"): p for p in files})
    _steps().stac_catalog(cfg=params.cfg, tiles=tiles,
                          states=dict(zip(params.tiles, params.states, strict=True)),
                          mosaics=dict(zip(params.rasters, inputs.mosaics, strict=True)),
                          extras=extras, collection=job.output.collection,
                          items=dict(zip(params.item_ids, job.output.tile_items, strict=True)),
                          source=params.source)


def report_figures(job: Job) -> None:
    params, inputs, output = job.params, job.input, job.output
    _steps().report_figures(
        cfg=params.cfg, layers=dict(zip(params.rasters, inputs.mosaics, strict=True)),
        date_tiles=list(params.dates), records=list(inputs.records),
        quicklooks=dict(zip(params.rasters, output.quicklooks, strict=True)),
        alerts_png=output.alerts, alerts_tsv=output.alerts_table, history_png=output.history,
        polygons=inputs.polygons[0] if inputs.polygons else None)


@own_process  # forks its workers
def strategy(job: Job) -> None:
    _steps().strategy(cfg=job.params.cfg, catalog=job.input.get("catalog") or None,
                      masks=dict(zip(job.params.tiles, job.input.masks, strict=True)),
                      truth_dir=job.params.truth_dir, outputs=dict(job.output),
                      threads=job.threads)
