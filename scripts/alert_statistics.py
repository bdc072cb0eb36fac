"""Snakemake adapter: mapped alert area per tile, month, status and region
(forestwatch.alerts.statistics)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.alert_statistics, cfg=sm.params.cfg, pieces=list(sm.input.pieces),
         by_tile_out=sm.output.by_tile, by_region_out=sm.output.get("by_region"))
