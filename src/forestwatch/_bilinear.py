"""The reader's bilinear sampling of a source window, one pass per pixel (numba).

:class:`forestwatch._assets._Sampler` samples every file of a load at the tile's pixel
positions; numpy made ~16 passes over a block's pixels per file (a gather, a product and
a sum per neighbour, then the mean and its rounding), 2.7 ms per file on 512 x 512 px and
most of a load whose source blocks were already decoded (BENCHMARKS.md, "Sampling in one
pass"). This kernel makes one pass, releases the GIL (the reader's threads sample on
every core), and gives the same bits: the same float32 operations in the same order (no
``fastmath``, so no fused multiply-add).

Imported by the reader at its first bilinear sample (numba's import, ~0.3 s, is not paid
by jobs that read nothing); compiled once per environment into numba's cache
(``cache=True``, next to this file or in ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import numba
import numpy as np

#: the least summed weight of a pixel's neighbours holding data for it to get a value
MIN_WEIGHT = np.float32(1e-5)


@numba.njit(nogil=True, cache=True)
def bilinear(data, i0, i1, i2, i3, w0, w1, w2, w3, nodata):  # pragma: no cover (numba)
    """Bilinear values of the flat source window ``data`` (uint16) at each pixel.

    ``i0``..``i3`` (int32) are each pixel's four neighbours as flat indices into ``data``
    (a neighbour outside the file points anywhere in it and has weight 0), ``w0``..``w3``
    (float32) their weights. A neighbour equal to ``nodata`` is left out and the weights
    renormalised over the others; a pixel whose neighbours with data weigh less than
    :data:`MIN_WEIGHT` gets 0. Values are rounded half up to uint16.
    """
    n = i0.shape[0]
    out = np.empty(n, dtype=np.uint16)
    zero = np.float32(0.0)
    half = np.float32(0.5)
    top = np.float32(65535.0)
    for p in range(n):
        total = zero
        weight = zero
        v = data[i0[p]]
        if v != nodata:
            total += w0[p] * np.float32(v)
            weight += w0[p]
        v = data[i1[p]]
        if v != nodata:
            total += w1[p] * np.float32(v)
            weight += w1[p]
        v = data[i2[p]]
        if v != nodata:
            total += w2[p] * np.float32(v)
            weight += w2[p]
        v = data[i3[p]]
        if v != nodata:
            total += w3[p] * np.float32(v)
            weight += w3[p]
        if weight >= MIN_WEIGHT:
            value = np.floor(total / weight + half)
            out[p] = np.uint16(min(max(value, zero), top))
        else:
            out[p] = 0
    return out


def warm() -> float:
    """Compile :func:`bilinear` for the reader's arguments (uint16 data), or load it from
    numba's cache; seconds taken (~1.5 s cold, ~0.5 s cached in a process that used no
    numba before). For :func:`forestwatch.monitor.warm_numba_cache`."""
    import time

    t0 = time.perf_counter()
    taps = np.zeros(1, dtype=np.int32)
    weights = np.ones(1, dtype=np.float32)
    bilinear(np.ones(1, dtype=np.uint16), taps, taps, taps, taps, weights, weights, weights,
             weights, 0.0)
    return time.perf_counter() - t0
