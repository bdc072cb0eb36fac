"""Stratified estimators of accuracy and area from a reference sample.

The estimators of Stehman (2014), "Estimating area and map accuracy for stratified random
sampling when the strata are different from the map classes" (Int. J. Remote Sens.
35:4923-4939). Every quantity is a population mean of a 0/1 variable per sample unit or a
ratio of two such means:

* proportion of area of class k: ``y = (reference == k)`` (eq. 14);
* overall accuracy: ``y = (map == reference)`` (eq. 12);
* user's accuracy of k: ``y = (map == k and reference == k)``, ``x = (map == k)``
  (eqs. 18-19); producer's accuracy of k: the same ``y``, ``x = (reference == k)``
  (eqs. 22-23);
* cell (i, j) of the error matrix in area proportions: ``y = (map == i and reference ==
  j)``.

A mean is ``sum_h N_h ybar_h / N`` (eq. 2) with variance ``sum_h N_h^2 s2_yh / n_h / N^2``
(eq. 25), a ratio ``R = sum_h N_h ybar_h / sum_h N_h xbar_h`` (eq. 27) with variance
``sum_h N_h^2 (s2_yh + R^2 s2_xh - 2 R s_xyh) / n_h / X^2`` (eq. 28), where ``N_h`` is
the size of stratum h, ``n_h`` its sample count and ``s2``/``s`` the sample
(co)variances within the stratum (ddof 1). When the strata are the map classes these are
exactly the estimators of Olofsson et al. (2014), "Good practices for estimating area and
assessing accuracy of land change" (Remote Sens. Environ. 148:42-57), eqs. 2-10.

The finite population correction ``(1 - n_h / N_h)`` of Stehman's eq. 25 is applied only
with ``finite_population_correction=True`` (meaningful when ``strata_size`` counts
sampling units, e.g. pixels; nrt-validate's ``StratifiedEstimator`` always applies it);
by default it is left out, as in Olofsson et al. (2014): with pixel-sized units it
changes nothing at the printed precision.

Undefined values are NaN, never 0: a user's accuracy of a class no sample unit is mapped
as, a producer's accuracy of a class no sample unit is in the reference; and every
standard error when a stratum holds a single sample unit (its within-stratum variance is
undefined, so is the total's). The 95 % confidence interval half-width is ``1.96 * SE``
(normal approximation).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: standard normal quantile of the 95 % two-sided confidence interval
Z95 = 1.96


@dataclass(frozen=True)
class AccuracyEstimate:
    """Stratified estimates of accuracy and area; every SE is a standard error.

    * ``overall``, ``overall_se``: overall accuracy (share of the area correctly mapped,
      0..1) and its SE;
    * ``users``, ``producers``: class -> (accuracy 0..1, SE); NaN when undefined;
    * ``area``: class -> (estimated area, SE, 95 % CI half-width = 1.96 * SE), in the unit
      of ``strata_size`` (pixels, hectares, ...);
    * ``proportion``: class -> (share of the total area 0..1, SE);
    * ``matrix``: (map class, reference class) -> estimated share of the total area;
    * ``classes``: the classes, sorted; ``n``: the sample size; ``total``: the sum of the
      strata sizes (same unit as ``area``).
    """

    overall: float
    overall_se: float
    users: dict[Hashable, tuple[float, float]]
    producers: dict[Hashable, tuple[float, float]]
    area: dict[Hashable, tuple[float, float, float]]
    proportion: dict[Hashable, tuple[float, float]]
    matrix: dict[tuple[Hashable, Hashable], float]
    classes: tuple[Hashable, ...]
    n: int
    total: float


class _Design:
    """Stratum membership, sizes and sample counts of one stratified sample."""

    def __init__(self, stratum: np.ndarray, strata_size: Mapping[Hashable, float],
                 fpc: bool):
        names = list(strata_size)
        index = {s: i for i, s in enumerate(names)}
        missing = sorted({str(s) for s in stratum if s not in index})
        if missing:
            raise ValueError(
                f"Strata {missing} hold samples but have no size in strata_size "
                f"(which names {sorted(map(str, names))}); add their sizes.")
        self.h = np.array([index[s] for s in stratum], dtype=np.int64)
        self.N_h = np.array([float(strata_size[s]) for s in names])
        if np.any(~np.isfinite(self.N_h)) or np.any(self.N_h <= 0):
            raise ValueError(f"Every stratum size must be a positive number; got {dict(strata_size)}.")
        self.n_h = np.bincount(self.h, minlength=len(names)).astype(float)
        empty = [str(s) for s, n in zip(names, self.n_h, strict=True) if n == 0]
        if empty:
            raise ValueError(
                f"Strata {empty} have a size but no sample units: their area would be "
                "left out of every estimate. Sample them, or leave them out of strata_size "
                "(and the estimates then cover only the other strata).")
        self.N = float(self.N_h.sum())
        self.fpc = (1.0 - self.n_h / self.N_h) if fpc else np.ones_like(self.N_h)
        #: SEs are undefined when a stratum has a single sample unit
        self.se_defined = bool(np.all(self.n_h >= 2))

    def _means(self, v: np.ndarray) -> np.ndarray:
        return np.bincount(self.h, weights=v, minlength=len(self.N_h)) / self.n_h

    def _var(self, v: np.ndarray) -> np.ndarray:
        """Within-stratum sample variance (ddof 1) of ``v``, per stratum."""
        dev = v - self._means(v)[self.h]
        return np.bincount(self.h, weights=dev * dev, minlength=len(self.N_h)) / (self.n_h - 1)

    def mean(self, y: np.ndarray) -> tuple[float, float]:
        """Population mean of ``y`` (eq. 2) and its SE (eq. 25)."""
        est = float(np.sum(self.N_h * self._means(y)) / self.N)
        if not self.se_defined:
            return est, float("nan")
        var = np.sum(self.N_h ** 2 * self.fpc * self._var(y) / self.n_h) / self.N ** 2
        return est, float(np.sqrt(var))

    def ratio(self, y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
        """Ratio of the totals of ``y`` and ``x`` (eq. 27) and its SE (eq. 28)."""
        X = float(np.sum(self.N_h * self._means(x)))
        if X == 0:
            return float("nan"), float("nan")
        R = float(np.sum(self.N_h * self._means(y)) / X)
        if not self.se_defined:
            return R, float("nan")
        # s2_y + R^2 s2_x - 2 R s_xy is the within-stratum variance of y - R x
        var = np.sum(self.N_h ** 2 * self.fpc * self._var(y - R * x) / self.n_h) / X ** 2
        return R, float(np.sqrt(var))


def _sorted_classes(values) -> tuple[Hashable, ...]:
    try:
        return tuple(sorted(values))
    except TypeError:  # mixed types: a stable order by their text
        return tuple(sorted(values, key=str))


def stratified_estimate(*, map_class: Sequence[Hashable], reference_class: Sequence[Hashable],
                        stratum: Sequence[Hashable], strata_size: Mapping[Hashable, float],
                        classes: Sequence[Hashable] | None = None,
                        finite_population_correction: bool = False) -> AccuracyEstimate:
    """Accuracy and area estimates from a stratified random sample (Stehman 2014).

    ``map_class``, ``reference_class``, ``stratum``: one label (any hashable) per sample
    unit, same length. ``strata_size``: stratum -> its size (pixels, hectares, ...: the
    area outputs are in the same unit); every stratum with a sample needs a size, and
    every stratum with a size needs at least one sample unit. When the strata are the map
    classes (``stratum = map_class``, ``strata_size`` the mapped areas) this is the
    estimator of Olofsson et al. (2014).

    ``classes``: the classes to report (default: every label in ``map_class`` and
    ``reference_class``); a class absent from the sample gets area 0 (SE 0) and NaN
    user's/producer's accuracy. ``finite_population_correction``: apply ``1 - n_h/N_h``
    (only meaningful when ``strata_size`` counts sampling units).

    SEs are NaN when a stratum holds a single sample unit. Raises ``ValueError`` for
    arrays of different lengths, an empty sample, strata without a size or sizes without
    a sample.
    """
    m = np.asarray(list(map_class), dtype=object)
    r = np.asarray(list(reference_class), dtype=object)
    s = np.asarray(list(stratum), dtype=object)
    if not (len(m) == len(r) == len(s)):
        raise ValueError(
            f"map_class, reference_class and stratum must have one entry per sample unit; "
            f"got lengths {len(m)}, {len(r)} and {len(s)}.")
    if len(m) == 0:
        raise ValueError("The sample is empty: there is nothing to estimate from.")
    design = _Design(s, strata_size, finite_population_correction)
    found = set(m.tolist()) | set(r.tolist())
    names = _sorted_classes(found if classes is None else set(classes) | found)

    is_map = {k: (m == k).astype(float) for k in names}
    is_ref = {k: (r == k).astype(float) for k in names}
    correct = (m == r).astype(float)

    overall, overall_se = design.mean(correct)
    users, producers, area, proportion = {}, {}, {}, {}
    for k in names:
        hit = is_map[k] * is_ref[k]
        users[k] = design.ratio(hit, is_map[k])
        producers[k] = design.ratio(hit, is_ref[k])
        p, p_se = design.mean(is_ref[k])
        proportion[k] = (p, p_se)
        area[k] = (p * design.N, p_se * design.N, Z95 * p_se * design.N)
    matrix = {(i, j): design.mean(is_map[i] * is_ref[j])[0] for i in names for j in names}
    return AccuracyEstimate(
        overall=overall, overall_se=overall_se, users=users, producers=producers, area=area,
        proportion=proportion, matrix=matrix, classes=names, n=len(m), total=design.N)
