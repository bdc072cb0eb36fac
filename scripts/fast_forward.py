"""Snakemake adapter: bring one tile's state forward to fast_forward.until (forestwatch.monitor)."""

from forestwatch import steps
from forestwatch.layout import run_root
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.fast_forward, cfg=sm.params.cfg, tile_id=sm.wildcards.tile,
         catalog=sm.input.catalog or None, run_dir=run_root(sm.params.cfg["run_name"]), out=sm.output[0],
         threads=sm.threads)
