"""Snakemake adapter: detections vs the synthetic truth (forestwatch.accuracy)."""

from pathlib import Path

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.accuracy, cfg=sm.params.cfg, mask_vrt=sm.input.mask_vrt,
         date_vrt=sm.input.date_vrt, truth_dir=str(Path(sm.input.truth).parent),
         json_out=sm.output.json, md_out=sm.output.markdown,
         status_vrt=sm.input.status_vrt, first_vrt=sm.input.first_vrt)
