"""Figures without pyplot: pyplot keeps one global list of open figures and is not
thread-safe, and the workflow's jobs run in threads of one process (forestwatch.jobs)."""

from __future__ import annotations

from pathlib import Path

from .io import atomic_path


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """``(figure, axes)`` as ``matplotlib.pyplot.subplots`` makes them, drawn by Agg,
    registered nowhere (nothing to close); ``kwargs`` go to ``Figure`` (``figsize``,
    ``dpi``) except ``sharex``, ``sharey`` and ``squeeze``, which go to ``Figure.subplots``."""
    from matplotlib.figure import Figure

    grid = {k: kwargs.pop(k) for k in ("sharex", "sharey", "squeeze") if k in kwargs}
    fig = Figure(**kwargs)
    return fig, fig.subplots(nrows, ncols, **grid)


def save_png(fig, out: str | Path, **savefig) -> None:
    """Write ``fig`` to ``out`` as PNG, atomically; ``savefig`` goes to ``Figure.savefig``
    (``dpi``, ``bbox_inches``)."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", **savefig)
