"""Snakemake adapter: mosaic VRTs of all tiles, one per report layer (forestwatch.reports)."""

from forestwatch import steps
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
layers = list(sm.output.keys())
run_step(sm, steps.mosaic,
         tiles_by_layer={name: list(sm.params.tiles_by_layer[name]) for name in layers},
         vrts={name: sm.output[name] for name in layers})
