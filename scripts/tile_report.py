"""Snakemake adapter: mask and detection-date COGs of one tile (forestwatch.reports)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.tile_report, state_in=sm.input.state, mask_out=sm.output.mask,
         date_out=sm.output.detection_date)
