"""Square blocks over a tile: what bounds the memory of the rule and the model masks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


def blocks(shape: tuple[int, int], *, size: int) -> Iterator[tuple[slice, slice]]:
    """Row and column slices of square blocks of ``size`` px a side covering ``shape``
    (rows, cols in px), row by row; the last block of a row or column is smaller."""
    for r in range(0, shape[0], size):
        for c in range(0, shape[1], size):
            yield slice(r, min(r + size, shape[0])), slice(c, min(c + size, shape[1]))


def mask_by_block(tile: Any, items: Sequence[Any], *, bands: Sequence[str],
                  classify: Callable[[Any], np.ndarray], stac_cfg: dict, block_size: int,
                  loader: Callable[..., Any], threads: int) -> np.ndarray:
    """uint8 (y, x) mask of ``tile``: ``classify`` (a block's reflectance cube of
    ``bands`` -> bool (y, x), True = forest) on one block of ``block_size`` px a side at a
    time, so that memory is bounded by the block, whatever the tile size."""
    mask = np.zeros(tile.shape, dtype=np.uint8)
    for rows, cols in blocks(tile.shape, size=block_size):
        cube = loader(items, tile.geobox[rows, cols], list(bands), stac_cfg, threads=threads)
        mask[rows, cols] = classify(cube)
    return mask
