"""The regional screen's window shares, compiled: for each pixel, the share of the
observed pixels of a square window around it that are anomalous
(:meth:`forestwatch.monitor.regional.RegionalScreen.regional`, on every monitored day
of a screened tile).

The two window means are those of ``scipy.ndimage.uniform_filter(pixels.astype(float32),
size, mode="constant")``, bit for bit: the same running sum in float64 along each axis
(axis 0, then axis 1), each pass's sums divided by the window's size and stored as
float32 (``NI_UniformFilter1D`` of scipy 1.17; older releases divided each step,
which rounds differently), so that a pixel at ``max_share`` is screened exactly as
it was with scipy's filters (``tests/test_regional_screen.py`` compares the two with
the installed scipy). What the kernel saves is scipy's line buffers, the float32 copies
of the masks and the per-stratum masks: both means of both strata are taken in the same
two passes, row by row (memory of a few rows, not of the tile), and the share is written
in place.

Its own module so that importing :mod:`forestwatch.monitor` does not import numba.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def window_share(observed, anomalous, strata, stratified, size, min_observed,
                 out):  # pragma: no cover (numba)
    """Write into ``out`` (float32, the masks' 2-D shape) each pixel's mean of
    ``anomalous`` over the ``size`` x ``size`` window around it divided by the mean of
    ``observed`` there, or 0 where that is below ``min_observed`` (float32). The masks
    are bool; the window's outside counts as not observed. With ``stratified``, only the
    window's pixels of the pixel's own stratum count (``strata``: 0 or not 0, the masks'
    shape; not read otherwise): both strata are taken in the same passes."""
    h, w = observed.shape
    before = size // 2  # scipy's size1 (origin 0): the window's pixels before its centre
    scale = float(size)
    n = 2 if stratified else 1
    # pass 1, axis 0: per column and stratum, the window's counts (whole numbers, so
    # exact in any order, as scipy's float64 running sum of 0s and 1s), as float32 means
    # in a row padded with the window's outside (0), so that pass 2 needs no bounds; pass
    # 2 reads only that row, so each row is finished before the window moves down
    seen0 = np.zeros((n, w + size - 1), dtype=np.float32)
    hit0 = np.zeros((n, w + size - 1), dtype=np.float32)
    counts = np.zeros((2 * n, w), dtype=np.int32)  # seen, hit of stratum 0 (, 1)
    for y in range(-before, h):
        for row, sign in ((y + size - 1 - before, 1), (y - 1 - before, -1)):
            if 0 <= row < h:
                for k in range(n):
                    _count_row(counts[2 * k], observed[row], strata[row], stratified, k, sign)
                    _count_row(counts[2 * k + 1], anomalous[row], strata[row], stratified, k,
                               sign)
        if y >= 0:
            for k in range(n):
                _store_means(counts[2 * k], seen0[k, before:before + w], scale)
                _store_means(counts[2 * k + 1], hit0[k, before:before + w], scale)
            _share_row(seen0, hit0, strata[y], stratified, size, scale, min_observed, out[y])


@numba.njit(nogil=True, cache=True)
def _share_row(seen0, hit0, strata, stratified, size, scale, min_observed,
               share):  # pragma: no cover (numba)
    """Pass 2, axis 1, for one row: scipy's float64 running sum along the row of pass 1's
    float32 means, each step adding the entering value minus the leaving one (in float64,
    as scipy's line buffers: float32 - float32 would round); the share of each pixel
    from its stratum's sums."""
    n = seen0.shape[0]
    sa, ha, sb, hb = seen0[0], hit0[0], seen0[n - 1], hit0[n - 1]
    s0, t0 = _row_sums(sa, ha, size)
    s1, t1 = _row_sums(sb, hb, size) if stratified else (0.0, 0.0)
    for x in range(share.shape[0]):
        if x > 0:
            enter, leave = x + size - 1, x - 1
            s0 += np.float64(sa[enter]) - np.float64(sa[leave])
            t0 += np.float64(ha[enter]) - np.float64(ha[leave])
            if stratified:
                s1 += np.float64(sb[enter]) - np.float64(sb[leave])
                t1 += np.float64(hb[enter]) - np.float64(hb[leave])
        s, t = s0, t0
        if stratified and strata[x] != 0:
            s, t = s1, t1
        seen = np.float32(s / scale)
        share[x] = np.float32(t / scale) / seen if seen >= min_observed else np.float32(0)


@numba.njit(nogil=True, cache=True)
def _row_sums(seen, hit, size):  # pragma: no cover (numba)
    """The first window's sums of a padded row of pass 1, in scipy's order."""
    s = t = 0.0
    for c in range(size):
        s += seen[c]
        t += hit[c]
    return s, t


@numba.njit(nogil=True, cache=True, inline="always")
def _count_row(counts, mask, strata, stratified, stratum, sign):  # pragma: no cover (numba)
    """Add (``sign`` 1) or take away (-1) a row of ``mask`` in ``counts``: its pixels
    of ``stratum`` (0: ``strata`` 0, 1: not 0) with ``stratified``, else all."""
    if stratified:
        upper = stratum != 0
        for x in range(counts.size):  # no branch: strata can alternate pixel by pixel
            counts[x] += sign * (mask[x] & ((strata[x] != 0) == upper))
    else:
        for x in range(counts.size):
            counts[x] += sign * mask[x]


@numba.njit(nogil=True, cache=True, inline="always")
def _store_means(counts, means, scale):  # pragma: no cover (numba)
    """``means`` (float32) = ``counts`` / ``scale``, divided in float64 as scipy does."""
    for x in range(counts.size):
        means[x] = counts[x] / scale


def warm() -> None:
    """Compile :func:`window_share` for the screen's arguments (bool masks, uint8 strata),
    or load it from numba's cache. For :func:`forestwatch.monitor.warm_numba_cache`."""
    from .regional import MIN_OBSERVED_SHARE

    observed = np.ones((8, 8), dtype=bool)
    window_share(observed, observed, observed.view(np.uint8), True, 3,
                 np.float32(MIN_OBSERVED_SHARE), np.empty((8, 8), dtype=np.float32))
