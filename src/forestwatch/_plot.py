"""Figures without pyplot: pyplot keeps one global list of open figures and is not
thread-safe, and the workflow's jobs run in threads of one process (forestwatch.jobs)."""

from __future__ import annotations

import logging
from pathlib import Path

from .io import atomic_path

log = logging.getLogger(__name__)

#: white space kept around what is drawn by :func:`save_png` with ``tight``, inches (as
#: matplotlib's ``savefig(pad_inches=...)`` default)
PAD_INCHES = 0.1


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """``(figure, axes)`` as ``matplotlib.pyplot.subplots`` makes them, drawn by Agg,
    registered nowhere (nothing to close); ``kwargs`` go to ``Figure`` (``figsize``,
    ``dpi``) except ``sharex``, ``sharey`` and ``squeeze``, which go to ``Figure.subplots``."""
    from matplotlib.figure import Figure

    grid = {k: kwargs.pop(k) for k in ("sharex", "sharey", "squeeze") if k in kwargs}
    fig = Figure(**kwargs)
    return fig, fig.subplots(nrows, ncols, **grid)


def framed_axes(*, width: float, height: float, left: float, bottom: float, right: float,
                top: float):
    """``(figure, axes)``: an axes of ``width`` x ``height`` inches with ``left``,
    ``bottom``, ``right`` and ``top`` inches of the figure around it (room for axis labels
    and a legend inside the figure, where :func:`save_png`'s crop of one drawing holds
    them). Drawn by Agg, registered nowhere, as :func:`subplots`."""
    from matplotlib.figure import Figure

    fw, fh = left + width + right, bottom + height + top
    fig = Figure(figsize=(fw, fh))
    return fig, fig.add_axes((left / fw, bottom / fh, width / fw, height / fh))


def save_png(fig, out: str | Path, *, dpi: float | None = None, tight: bool = False) -> None:
    """Write ``fig`` to ``out`` as PNG at ``dpi`` (default: the figure's), atomically.

    With ``tight``, the PNG holds what is drawn and :data:`PAD_INCHES` around it, as
    ``savefig(bbox_inches="tight")`` makes it, but from one drawing: the figure is drawn
    once by Agg and its pixels cropped, where ``savefig`` draws it twice (once to find
    what is drawn, once to write it; most of a quicklook's time is that layout,
    BENCHMARKS.md). When something is drawn outside the figure (a legend placed beyond
    its edge), the crop cannot hold it and ``savefig`` makes the PNG the usual way."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    dpi = dpi or fig.dpi
    with atomic_path(out) as tmp:
        if not tight:
            fig.savefig(tmp, format="png", dpi=dpi)
            return
        fig.set_dpi(dpi)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        drawn = fig.get_tightbbox(canvas.get_renderer()).padded(PAD_INCHES)
        width, height = fig.get_size_inches()
        if drawn.x0 < 0 or drawn.y0 < 0 or drawn.x1 > width or drawn.y1 > height:
            log.debug("%s: drawn outside the figure (%s); saved in two passes", out, drawn)
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches=drawn)
            return
        rows, cols = round(height * dpi), round(width * dpi)
        x0, x1 = round(drawn.x0 * dpi), round(drawn.x1 * dpi)
        y0, y1 = rows - round(drawn.y1 * dpi), rows - round(drawn.y0 * dpi)
        pixels = np.asarray(canvas.buffer_rgba())[max(0, y0):y1, max(0, x0):min(cols, x1)]
        Image.fromarray(pixels).save(tmp, format="png")
