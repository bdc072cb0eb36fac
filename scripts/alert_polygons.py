"""Snakemake adapter: the run's alert polygons with stable ids (forestwatch.alerts.polygons)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.alert_polygons, cfg=sm.params.cfg, pieces=list(sm.input.pieces),
         out=sm.output[0])
