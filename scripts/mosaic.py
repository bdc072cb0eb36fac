"""Snakemake adapter: mosaic VRTs of all tiles (forestwatch.reports)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.mosaic, mask_tiles=list(sm.input.mask), date_tiles=list(sm.input.detection_date),
         mask_vrt=sm.output.mask, date_vrt=sm.output.detection_date)
