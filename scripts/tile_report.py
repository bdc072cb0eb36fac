"""Snakemake adapter: mask, detection-date and alert-layer COGs of one tile
(forestwatch.reports), and its alert pieces (forestwatch.alerts.polygons)."""

from forestwatch import steps
from forestwatch.alerts.layers import ALERT_REPORT_LAYERS
from forestwatch.layout import RunLayout
from forestwatch.workflow import run_step

sm = snakemake  # noqa: F821
RUN = RunLayout(sm.params.run_root)
tile = sm.wildcards.tile
run_step(sm, steps.tile_report, cfg=sm.params.cfg, tile_id=tile, state_in=sm.input.state,
         mask_out=RUN.report(tile, "mask"), date_out=RUN.report(tile, "detection_date"),
         alert_out={name: RUN.report(tile, name) for name in ALERT_REPORT_LAYERS},
         pieces_out=sm.output.pieces)
