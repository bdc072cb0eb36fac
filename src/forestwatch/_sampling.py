"""The reader's sampling of a source window onto a tile layer, one pass per pixel (numba).

:class:`forestwatch._assets._Sampler` samples every file of a load at the tile's pixel
positions and fills the file's slice layer where no earlier item of the slice observed
the pixel. numpy made ~16 passes over a block's pixels per bilinear file (a gather, a
product and a sum per neighbour, the mean and its rounding), then the reader's main
thread two more to fuse the result into the layer (``np.copyto`` where the layer was
still 0): most of a load whose source blocks were already decoded (BENCHMARKS.md,
"Sampling in one pass, the IQR fit's quantiles on every core"). These kernels make one
pass, skip the pixels an earlier item filled, write into the layer, and release the GIL
(the reader's threads sample on every core). Bilinear values keep their bits: the same
float32 operations in the same order (no ``fastmath``, so no fused multiply-add).

Imported by the reader at its first sampled read (numba's import, ~0.3 s, is not paid by
jobs that read nothing); compiled once per environment into numba's cache
(``cache=True``, next to this file or in ``NUMBA_CACHE_DIR``).

Both kernels take ``targets``: the layer's flat index of each sampled pixel, or an empty
array when the sampled pixels are the whole layer in order (a file covering the tile).
"""

from __future__ import annotations

import numba
import numpy as np

#: the least summed weight of a pixel's neighbours holding data for it to get a value
MIN_WEIGHT = np.float32(1e-5)


@numba.njit(nogil=True, cache=True)
def bilinear_fill(data, taps, weights, nodata, out, targets):  # pragma: no cover (numba)
    """Fill ``out`` (uint16, flat layer) with the bilinear values of the flat source window
    ``data`` where ``out`` is 0.

    ``taps`` (int32, (4, pixels)) are each sampled pixel's four neighbours as flat indices
    into ``data`` (a neighbour outside the file points anywhere in it and has weight 0),
    ``weights`` (float32, (4, pixels)) their weights. A neighbour equal to ``nodata`` is
    left out and the weights renormalised over the others; a pixel whose neighbours with
    data weigh less than :data:`MIN_WEIGHT` stays 0. Values are rounded half up to uint16.
    """
    zero = np.float32(0.0)
    half = np.float32(0.5)
    top = np.float32(65535.0)
    everywhere = targets.shape[0] == 0
    for p in range(taps.shape[1]):
        t = p if everywhere else targets[p]
        if out[t] != 0:
            continue  # an earlier item of the slice observed it
        total = zero
        weight = zero
        for k in range(4):  # in this order: the sums' float32 bits depend on it
            v = data[taps[k, p]]
            if v != nodata:
                total += weights[k, p] * np.float32(v)
                weight += weights[k, p]
        if weight >= MIN_WEIGHT:
            value = np.floor(total / weight + half)
            out[t] = np.uint16(min(max(value, zero), top))


@numba.njit(nogil=True, cache=True)
def nearest_fill(data, index, nodata, out, targets):  # pragma: no cover (numba)
    """Fill ``out`` (uint16, flat layer) with ``data[index]`` where ``out`` is 0 and the
    value is neither ``nodata`` nor 0."""
    everywhere = targets.shape[0] == 0
    for p in range(index.shape[0]):
        t = p if everywhere else targets[p]
        if out[t] == 0:
            v = data[index[p]]
            if v != nodata:
                out[t] = v


def warm() -> float:
    """Compile both kernels for the reader's arguments (uint16 and uint8 data), or load
    them from numba's cache; seconds taken (~3 s cold, ~0.5 s cached in a process that used
    no numba before). For :func:`forestwatch.monitor.warm_numba_cache`."""
    import time

    t0 = time.perf_counter()
    taps = np.zeros((4, 1), dtype=np.int32)
    weights = np.ones((4, 1), dtype=np.float32)
    out = np.zeros(1, dtype=np.uint16)
    everywhere = np.zeros(0, dtype=np.int64)
    for dtype in (np.uint16, np.uint8):
        data = np.ones(1, dtype=dtype)
        bilinear_fill(data, taps, weights, 0.0, out, everywhere)
        nearest_fill(data, taps[0], 0.0, out, everywhere)
    return time.perf_counter() - t0
