"""Snakemake adapter: the report's quicklooks and plots (forestwatch.publish.figures)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.report_figures, cfg=sm.params.cfg,
         layers=dict(zip(sm.params.rasters, sm.input.mosaics, strict=True)),
         date_tiles=list(sm.params.dates), records=list(sm.input.records),
         quicklooks=dict(zip(sm.params.rasters, sm.output.quicklooks, strict=True)),
         alerts_png=sm.output.alerts, alerts_tsv=sm.output.alerts_table,
         history_png=sm.output.history,
         polygons=sm.input.polygons[0] if sm.input.polygons else None)
