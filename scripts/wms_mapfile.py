"""Snakemake adapter: the WMS's MapServer mapfile (forestwatch.publish.mapfile)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.wms_mapfile, cfg=sm.params.cfg, layers=dict(sm.input.items()),
         out=sm.output[0])
