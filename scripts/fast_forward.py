"""Snakemake adapter: bring one tile's state forward to fast_forward.until (forestwatch.monitoring)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.fast_forward, cfg=sm.params.cfg, tile_id=sm.wildcards.tile,
         catalog=sm.input.catalog or None, state_in=sm.input.state, out=sm.output[0],
         threads=sm.threads)
