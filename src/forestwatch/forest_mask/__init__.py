"""Forest mask per tile: 1 = forest (monitored), 0 = not forest, uint8 on the tile's grid.

Three methods (``forest_mask.method``), one module each:

* ``file`` (:mod:`._file`): an existing tree-cover raster (percent) warped onto the tile and
  thresholded;
* ``rule`` (:mod:`._rule`): the harmonic-intercept rule of Zhu et al. (2012) on the history;
* ``model`` (:mod:`.model`): a tree-cover model (ONNX, or xinfereo when installed) run on
  per-pixel statistics of one period's clear-sky reflectance, thresholded.

The rule and the model read the imagery one block at a time (:func:`blocks`), so their
memory is bounded by the block, not the tile. :func:`write_mask` records in the GeoTIFF's
tags how a mask was made (:func:`read_mask_provenance` gives it back; the fit copies it
into the tile's state).

Importing this package, or :mod:`.model`, imports neither onnxruntime nor the imagery
stack (the Snakefile imports :mod:`.model` on every parse): a public name's module is
imported when the name is first used; :meth:`.model.OnnxTreeCoverModel.load` imports
onnxruntime.
"""

from .._lazy import lazy_attributes

_PUBLIC = {
    "blocks": "._blocks",
    "mask_from_tree_cover": "._file", "read_mask": "._file",
    "read_mask_provenance": "._file", "write_mask": "._file",
    "harmonic_intercept": "._rule", "mask_from_rule": "._rule", "rule_classifier": "._rule",
    "no_history_error": "._rule", "kept_mask": "._file", "mask_key": "._file",
    "ModelDescription": ".model", "ModelError": ".model", "load_model": ".model",
    "mask_from_model": ".model",
}
__all__ = sorted(_PUBLIC)


__getattr__ = lazy_attributes(__name__, _PUBLIC)
