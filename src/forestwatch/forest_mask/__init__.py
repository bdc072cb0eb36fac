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

Importing this package does not import onnxruntime (the Snakefile imports
:mod:`.model` on every parse); :meth:`.model.OnnxTreeCoverModel.load` does.
"""

from ._blocks import blocks
from ._file import mask_from_tree_cover, read_mask, read_mask_provenance, write_mask
from ._rule import harmonic_intercept, mask_from_rule
from .model import ModelDescription, ModelError, load_model, mask_from_model

__all__ = [
    "ModelDescription",
    "ModelError",
    "blocks",
    "harmonic_intercept",
    "load_model",
    "mask_from_model",
    "mask_from_rule",
    "mask_from_tree_cover",
    "read_mask",
    "read_mask_provenance",
    "write_mask",
]
