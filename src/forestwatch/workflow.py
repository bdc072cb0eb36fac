"""Glue between Snakemake ``script:`` rules and :mod:`forestwatch.steps`."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable

from .access import RedactSecrets


def setup_logging(log_path: str | None) -> None:
    """Log to the rule's log file (and stderr), with timestamps."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:  # no header value or signed URL ever reaches a log
        handler.addFilter(RedactSecrets())
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    # odc-geo/affine deprecation chatter drowns the useful lines
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # odc-loader reprojects in-memory arrays that carry no geotransform of their own
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    for noisy in ("numba", "rasterio", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_step(snakemake, step: Callable, **kwargs) -> None:
    """Run ``step(**kwargs)`` with logging to ``snakemake.log[0]``; log and re-raise errors
    so that the job fails with the reason in its log."""
    setup_logging(snakemake.log[0] if len(snakemake.log) else None)
    log = logging.getLogger("forestwatch")
    t0 = time.perf_counter()
    log.info("rule %s %s", snakemake.rule, dict(snakemake.wildcards))
    try:
        step(**kwargs)
    except Exception as err:
        log.error("%s: %s", type(err).__name__, err, exc_info=True)
        raise
    log.info("done in %.1f s", time.perf_counter() - t0)
