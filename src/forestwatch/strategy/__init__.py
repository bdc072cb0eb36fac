"""Choosing the monitoring strategy (step 3 of the product, ``rules/strategy.smk``).

Candidates (index x monitor class x parameters x fit, and consensus combinations of
them) are fitted and monitored over the same period on a test area, from bands loaded
once per tile, and scored against reference samples or the synthetic archive's truth.

Modules, in the order of a run (:func:`run_strategy`):

* ``candidates``: :class:`Candidate` and :class:`Consensus` from the ``strategy`` config
  section (a list, grids, the configured monitor);
* ``reference``: reading reference samples (GeoPackage, GeoJSON, CSV, nrt-validate's
  SQLite segments) into :class:`ReferenceSamples`, with clear errors for bad files, and
  finding their pixels on the tiles (:func:`sample_pixels`);
* ``samples``: the samples a run scores against (reference samples, or a stratified
  sample of the synthetic truth) as :class:`ScoringSamples`;
* ``series``: the sample pixels' bands, read once per tile for every candidate;
* ``simulate``: one candidate fitted and monitored on those series in memory, with the
  workflow's own fit and alert-ladder code; consensus outcomes;
* ``scores``: per-candidate scores and the ranking;
* ``estimate``: stratified estimators of accuracy and area (Stehman 2014, which reduces
  to Olofsson et al. 2014 when the strata are the map classes);
* ``run``: the run itself; ``outputs``: its table, plots, quicklooks and recommended
  config (the only writer of the run's ``strategy/`` folder).
"""

from .._lazy import lazy_attributes

_PUBLIC = {
    "Candidate": ".candidates", "Consensus": ".candidates", "expand_candidates": ".candidates",
    "ReferenceDataError": ".reference", "ReferenceSamples": ".reference",
    "read_reference": ".reference", "sample_pixels": ".reference",
    "StrategyResult": ".run", "run_strategy": ".run", "test_area": ".run",
    "ScoringSamples": ".samples", "stratified_estimate": ".estimate",
}
__all__ = sorted(_PUBLIC)
__getattr__ = lazy_attributes(__name__, _PUBLIC)
