"""Snakemake adapter: QGIS styles beside the mosaics (forestwatch.publish.qml)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.qgis_styles, cfg=sm.params.cfg, layers=dict(sm.input.items()),
         styles=sm.params.styles)
