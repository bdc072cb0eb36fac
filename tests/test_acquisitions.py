"""One identity for an acquisition: granule + sensing time, the newest version per granule,
then solar days - the same for the fit, the fast-forward and the daily run."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from forestwatch.acquisitions import (
    acquisition_key,
    by_solar_day,
    granule_id,
    resolve_reprocessed,
    solar_day,
    version_label,
)
from forestwatch.grid import make_tiles
from forestwatch.stac import load_reflectance, read_item_collection, search_items


@pytest.fixture(scope="module")
def items(small_archive):
    return read_item_collection(small_archive["catalog"])


def _reprocessed(item, baseline="05.10", offset=None):
    new = copy.deepcopy(item)
    new.id = item.id.replace(f"_N{item.properties['s2:processing_baseline'].replace('.', '')}",
                             f"_N{baseline.replace('.', '')}")
    new.properties["s2:processing_baseline"] = baseline
    if offset is not None:
        for asset in new.assets.values():
            for band in asset.extra_fields.get("raster:bands", []):
                if "offset" in band:
                    band["offset"] = offset
    return new


def test_a_day_where_only_granule_a_is_republished_keeps_b_and_a_newest(items):
    day = [it for it in items if solar_day(it) == solar_day(items[0])]
    a, b = sorted(day, key=lambda i: i.properties["s2:mgrs_tile"])
    assert granule_id(a) != granule_id(b)  # a datatake over two granules
    a_new = _reprocessed(a)
    assert acquisition_key(a_new) == acquisition_key(a) != acquisition_key(b)
    res = resolve_reprocessed([a, b, a_new])
    assert {i.id for i in res.kept} == {b.id, a_new.id}
    assert res.superseded == [{"item": a.id, "superseded_by": a_new.id,
                               "reason": f"reprocessed: superseded by {a_new.id} (baseline 05.10)"}]
    (only_day,) = by_solar_day([a, b, a_new]).values()
    assert {i.id for i in only_day} == {b.id, a_new.id}
    # the order of the catalog does not matter
    assert {i.id for i in resolve_reprocessed([a_new, b, a]).kept} == {b.id, a_new.id}


def test_versions_order_by_baseline_then_publication(items):
    old = copy.deepcopy(items[0])
    same_baseline_later = copy.deepcopy(items[0])
    same_baseline_later.id += "_republished"
    old.properties["published"] = "2023-01-01T00:00:00Z"
    same_baseline_later.properties["published"] = "2023-02-01T00:00:00Z"
    assert version_label(same_baseline_later) > version_label(old)
    assert resolve_reprocessed([same_baseline_later, old]).kept == [same_baseline_later]
    assert version_label(_reprocessed(old)) > version_label(same_baseline_later)


def test_granule_id_falls_back_to_the_mgrs_extension_then_the_item(items):
    it = copy.deepcopy(items[0])
    del it.properties["s2:mgrs_tile"]
    it.properties.update({"mgrs:utm_zone": 33, "mgrs:latitude_band": "U",
                          "mgrs:grid_square": "US"})
    assert granule_id(it) == "33UUS"
    for key in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"):
        del it.properties[key]
    assert granule_id(it) == it.id  # nothing to tell versions apart: its own acquisition


def test_same_item_listed_twice_counts_once(items):
    assert resolve_reprocessed([items[0], copy.deepcopy(items[0])]).kept == [items[0]]


def test_a_day_mixing_baselines_keeps_both_granules_each_with_its_own_offset(small_archive,
                                                                            items):
    """Granule A re-published under baseline 04.00 (offset -0.1), its neighbour B still at
    03.01 (offset 0): both are loaded, each with its own DN -> reflectance rule, and the
    day's image is the same as if each had been loaded alone."""
    cfg = small_archive["cfg"]
    tile = make_tiles(cfg)[0]  # straddles both granules
    found = search_items(cfg["stac"], tile.bbox_lonlat(), "2021-03-01", "2021-03-31",
                         small_archive["catalog"])
    d = solar_day(found[0])
    a, b = sorted((i for i in found if solar_day(i) == d), key=lambda i: i.properties["s2:mgrs_tile"])
    assert a.properties["s2:processing_baseline"] == b.properties["s2:processing_baseline"] == "03.01"
    # the re-published A declares offset 0 under baseline 04.00 (its files are A's, so its
    # reflectance must equal A's): loaded with B, whose rule is the same, in one slice
    a_new = _reprocessed(a, baseline="04.00", offset=0.0)
    stac_cfg = dict(cfg["stac"], resampling={"reflectance": "nearest", "scl": "nearest"})
    both = load_reflectance([a, b], tile.geobox, ["red", "nir"], stac_cfg)
    mixed = load_reflectance([a_new, b], tile.geobox, ["red", "nir"], stac_cfg)
    assert json.loads(mixed.attrs["item_ids"]) == [a_new.id, b.id]
    for band in ("red", "nir", "clear"):
        np.testing.assert_array_equal(mixed[band].values, both[band].values)
    # with the baseline rule alone (no raster:bands), A's offset is -0.1 and B's 0: two
    # slices, each scaled by its own rule, fused afterwards in the same order as odc-stac
    # fuses one (the earlier sensing time, A, first)
    for asset in a_new.assets.values():
        asset.extra_fields.pop("raster:bands", None)
    got = load_reflectance([a_new, b], tile.geobox, ["nir"], stac_cfg)["nir"].values[0]
    only_a = load_reflectance([a], tile.geobox, ["nir"], stac_cfg)["nir"].values[0]
    only_b = load_reflectance([b], tile.geobox, ["nir"], stac_cfg)["nir"].values[0]
    expected = np.where(np.isfinite(only_a), only_a - np.float32(0.1), only_b)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert (np.isfinite(only_b) & np.isfinite(only_a)).any()  # the overlap is covered
