"""Snakemake adapter: rank the monitoring strategy's candidates (forestwatch.strategy)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
run_step(sm, steps.strategy, cfg=sm.params.cfg, catalog=sm.input.get("catalog") or None,
         masks=dict(zip(sm.params.tiles, sm.input.masks, strict=True)),
         truth_dir=sm.params.truth_dir, outputs=dict(sm.output), threads=sm.threads)
