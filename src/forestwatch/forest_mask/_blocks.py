"""Square blocks over a tile: what bounds the memory of the rule and the model masks."""

from __future__ import annotations

from collections.abc import Iterator


def blocks(shape: tuple[int, int], *, size: int) -> Iterator[tuple[slice, slice]]:
    """Row and column slices of square blocks of ``size`` px a side covering ``shape``
    (rows, cols in px), row by row; the last block of a row or column is smaller."""
    for r in range(0, shape[0], size):
        for c in range(0, shape[1], size):
            yield slice(r, min(r + size, shape[0])), slice(c, min(c + size, shape[1]))
