"""Choosing the monitoring strategy (step 3 of the product, ``rules/strategy.smk``).

Candidates (index x monitor class x parameters x fit, and consensus combinations of
them) are fitted and monitored over the same period on a test area, from bands loaded
once per tile, and scored against reference samples or the synthetic archive's truth.

Modules:

* ``reference``: reading reference samples (GeoPackage, GeoJSON, CSV, nrt-validate's
  SQLite segments) into :class:`ReferenceSamples`, with clear errors for bad files, and
  finding their pixels on the tiles (:func:`sample_pixels`);
* ``estimate``: stratified estimators of accuracy and area (Stehman 2014, which reduces
  to Olofsson et al. 2014 when the strata are the map classes);
"""
