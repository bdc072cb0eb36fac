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


@numba.njit(nogil=True, cache=True)
def bilinear_taps(col, row, rows, cols):  # pragma: no cover (numba)
    """The four neighbours and weights of each position for :func:`bilinear_fill`.

    ``col``, ``row`` (float64) are fractional positions in a source grid of ``rows`` x
    ``cols`` pixels, each inside it. Returns ``(taps, weights, window)``: ``taps`` (int32,
    (4, pixels)) the pixel centres (r0, c0), (r0, c0 + 1), (r0 + 1, c0), (r0 + 1, c0 + 1)
    around each position as flat indices into ``window`` ((top, bottom, left, right),
    inclusive, the source pixels the positions need), and ``weights`` (float32) their
    bilinear weights; a neighbour outside the grid gets index 0 and weight 0. Two passes
    (the window, then the taps) instead of numpy's ~50 over the tile's pixels and their
    temporaries: building the samplers was most of a one-acquisition read. The weights are the float32 products
    numpy made, bit for bit.
    """
    n = col.shape[0]
    cmin, rmin = 2**31 - 1, 2**31 - 1
    cmax, rmax = -2**31, -2**31
    for p in range(n):  # the window: no array kept, the second pass recomputes the floors
        ci = int(np.floor(col[p] - 0.5))
        ri = int(np.floor(row[p] - 0.5))
        cmin, cmax = min(cmin, ci), max(cmax, ci)
        rmin, rmax = min(rmin, ri), max(rmax, ri)
    top, left = max(rmin, 0), max(cmin, 0)
    bottom, right = min(rmax + 1, rows - 1), min(cmax + 1, cols - 1)
    win_cols = right + 1 - left
    taps = np.empty((4, n), dtype=np.int32)
    weights = np.empty((4, n), dtype=np.float32)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for p in range(n):
        c = col[p] - 0.5
        r = row[p] - 0.5
        cf = np.floor(c)
        rf = np.floor(r)
        wc = np.float32(c - cf)  # numpy's (c - floor(c)).astype(float32)
        wr = np.float32(r - rf)
        ci = int(cf)
        ri = int(rf)
        base = (ri - top) * win_cols + (ci - left)
        row_lo, row_hi = ri >= 0, ri < rows - 1
        col_lo, col_hi = ci >= 0, ci < cols - 1
        taps[0, p] = base if row_lo and col_lo else 0
        taps[1, p] = base + 1 if row_lo and col_hi else 0
        taps[2, p] = base + win_cols if row_hi and col_lo else 0
        taps[3, p] = base + win_cols + 1 if row_hi and col_hi else 0
        weights[0, p] = (one - wc) * (one - wr) if row_lo and col_lo else zero
        weights[1, p] = wc * (one - wr) if row_lo and col_hi else zero
        weights[2, p] = (one - wc) * wr if row_hi and col_lo else zero
        weights[3, p] = wc * wr if row_hi and col_hi else zero
    return taps, weights, (top, bottom, left, right)


@numba.njit(nogil=True, cache=True)
def nearest_taps(col, row):  # pragma: no cover (numba)
    """The source pixel under each position for :func:`nearest_fill`: ``(index, window)``,
    ``index`` (int32) flat into ``window`` ((top, bottom, left, right), inclusive).
    ``col``, ``row`` (float64) are inside the grid (>= 0, so truncation is the floor)."""
    n = col.shape[0]
    cmin, rmin = 2**31 - 1, 2**31 - 1
    cmax, rmax = -2**31, -2**31
    for p in range(n):
        ci, ri = int(col[p]), int(row[p])
        cmin, cmax = min(cmin, ci), max(cmax, ci)
        rmin, rmax = min(rmin, ri), max(rmax, ri)
    win_cols = cmax + 1 - cmin
    index = np.empty(n, dtype=np.int32)
    for p in range(n):
        index[p] = (int(row[p]) - rmin) * win_cols + (int(col[p]) - cmin)
    return index, (rmin, rmax, cmin, cmax)


@numba.njit(nogil=True, cache=True)
def interpolate_rows(along_x, iy, ty, out):  # pragma: no cover (numba)
    """``out[i, j] = along_x[iy[i], j] + (along_x[iy[i] + 1, j] - along_x[iy[i], j]) *
    ty[i]`` (float64): the second step of the reader's bilinear interpolation of pixel
    positions between exact nodes (:func:`forestwatch._assets._interpolate`), in one pass
    instead of numpy's five over the tile's pixels; the same float64 operations in the
    same order, so the same bits."""
    for i in range(out.shape[0]):
        lo, hi, t = along_x[iy[i]], along_x[iy[i] + 1], ty[i]
        o = out[i]
        for j in range(o.shape[0]):
            o[j] = lo[j] + (hi[j] - lo[j]) * t


@numba.njit(nogil=True, cache=True)
def inside_positions(col, row, rows, cols):  # pragma: no cover (numba)
    """The positions (``col``, ``row``: float64, one per tile pixel, flat) inside a source
    grid of ``rows`` x ``cols`` pixels: ``(targets, col, row)``, ``targets`` (int64) their
    flat tile indices, or empty when every position is inside (``col`` and ``row`` are
    then the arrays given). Two passes (count, then gather) instead of numpy's comparisons,
    ``flatnonzero`` and gathers, made once per source grid instead of once per sampler."""
    n = col.shape[0]
    count = 0
    for p in range(n):
        c, r = col[p], row[p]
        if c >= 0 and c < cols and r >= 0 and r < rows:
            count += 1
    if count == n:
        return np.zeros(0, dtype=np.int64), col, row
    targets = np.empty(count, dtype=np.int64)
    col_in = np.empty(count, dtype=np.float64)
    row_in = np.empty(count, dtype=np.float64)
    k = 0
    for p in range(n):
        c, r = col[p], row[p]
        if c >= 0 and c < cols and r >= 0 and r < rows:
            targets[k], col_in[k], row_in[k] = p, c, r
            k += 1
    return targets, col_in, row_in


def warm() -> float:
    """Compile the kernels for the reader's arguments (uint16 and uint8 data), or load
    them from numba's cache; seconds taken (~3 s cold, ~0.5 s cached in a process that used
    no numba before). For :func:`forestwatch.monitor.warm_numba_cache`."""
    import time

    t0 = time.perf_counter()
    taps = np.zeros((4, 1), dtype=np.int32)
    weights = np.ones((4, 1), dtype=np.float32)
    out = np.zeros(1, dtype=np.uint16)
    everywhere = np.zeros(0, dtype=np.int64)
    col = row = np.full(1, 0.5)
    bilinear_taps(col, row, 1, 1)
    nearest_taps(col, row)
    inside_positions(col, row, 1, 1)
    interpolate_rows(np.zeros((2, 1)), np.zeros(1, dtype=np.int64), np.zeros(1), np.empty((1, 1)))
    for dtype in (np.uint16, np.uint8):
        data = np.ones(1, dtype=dtype)
        bilinear_fill(data, taps, weights, 0.0, out, everywhere)
        nearest_fill(data, taps[0], 0.0, out, everywhere)
    return time.perf_counter() - t0
