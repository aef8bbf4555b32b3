"""The matminer bridge (atomsets_tf.ext.matminer): MEGNet taps as a featurizer, equal to the package's own taps."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from atomsets_tf.data.io import Table
from atomsets_tf.errors import AtomSetsError, DataFormatError, IsolatedAtomError, MissingExtraError, UnknownTapError
from atomsets_tf.models.loading import tap_table
from atomsets_tf.utils.io import shared_dir
from tests._tables import toy_crystals

pytest.importorskip("matminer")
SHARED = shared_dir()
PARENT = "megnet-mp-2019.4.1-formation_energy"


@pytest.fixture(scope="module")
def megnet():
    if SHARED is None or not (SHARED / "pretrained" / "megnet").is_dir():
        pytest.skip("shared/pretrained/megnet not found")
    from atomsets_tf.models.megnet.model import MEGNet

    return MEGNet.from_preset(PARENT, download=False)


def test_featurize_dataframe_equals_the_package_taps(megnet):
    from atomsets_tf.ext.matminer import MEGNetTapFeaturizer

    structures = toy_crystals(with_nacl=True)[:5]
    featurizer = MEGNetTapFeaturizer(megnet, taps=("f", "V1", "u2"))
    df = featurizer.featurize_dataframe(pd.DataFrame({"structure": structures, "y": range(5)}), "structure",
                                        pbar=False)
    labels = featurizer.feature_labels()
    assert len(labels) == len(set(labels)) == len(featurizer.featurize(structures[0]))
    assert list(df.columns) == ["structure", "y", *labels]
    taps = tap_table(megnet, Table([f"s{i}" for i in range(5)], structures, None, "structure"), ["f", "V1", "u2"])
    f_cols = [c for c in labels if c.startswith("MEGNet f ")]
    np.testing.assert_array_equal(df[f_cols].to_numpy(), taps["f"].astype(np.float64))
    np.testing.assert_array_equal(df[[c for c in labels if c.startswith("MEGNet u2 ")]].to_numpy(), taps["u2"])
    occupancy = [np.array([sum(site.species.values()) for site in s]) for s in structures]
    expected = np.stack([np.average(v, axis=0, weights=w) for v, w in zip(taps["V1"], occupancy)])
    pooled = df[[c for c in labels if c.startswith("MEGNet V1 mean ")]].to_numpy()
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(pooled, axis=0).max() > 0  # the structures differ
    one = featurizer.featurize(structures[3])  # a single structure gives its row of the batch
    np.testing.assert_allclose(one, df.loc[3, labels].to_numpy(dtype=float), rtol=1e-5, atol=1e-6)


def test_bad_inputs_name_the_entry_and_the_tap(megnet):
    from atomsets_tf.ext.matminer import MEGNetTapFeaturizer

    with pytest.raises(UnknownTapError, match="'V9'"):
        MEGNetTapFeaturizer(megnet, taps=("f", "V9"))
    with pytest.raises(UnknownTapError, match="'E1'"):  # bond-level
        MEGNetTapFeaturizer(megnet, taps="E1")
    featurizer = MEGNetTapFeaturizer(megnet, taps="V0")
    assert featurizer.n_jobs == 1
    good = toy_crystals()[1]
    with pytest.raises(DataFormatError, match="entry 1: .*needs a pymatgen Structure, got a str"):
        featurizer.featurize_many([good, "NaCl"], pbar=False)
    rows = featurizer.featurize_many([good, "NaCl"], ignore_errors=True, return_errors=True, pbar=False)
    assert np.isfinite(rows[0][:-1]).all() and np.isnan(rows[0][-1])
    assert np.isnan(rows[1][:-1]).all() and "needs a pymatgen Structure" in rows[1][-1]
    lonely = Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]])  # no bond within the cutoff
    crystals = toy_crystals()[:3]
    chunked = MEGNetTapFeaturizer(megnet, taps=("V0", "f"), chunk_size=2)
    with pytest.raises(IsolatedAtomError, match="structure '2'"):
        chunked.featurize_many([crystals[0], crystals[1], lonely, crystals[2]], pbar=False)
    rows = chunked.featurize_many([crystals[0], crystals[1], lonely, crystals[2]], ignore_errors=True, pbar=False)
    clean = chunked.featurize_many(crystals, pbar=False)
    assert np.isnan(rows[2]).all()  # the failing chunk is redone one entry at a time; the others are kept
    np.testing.assert_allclose(np.array([rows[0], rows[1], rows[3]]), np.array(clean), rtol=1e-5, atol=1e-6)
    assert featurizer.citations() and all("@article" in c for c in featurizer.citations())
    assert featurizer.implementors()


def test_matminer_absent_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matminer", None)
    monkeypatch.setitem(sys.modules, "matminer.featurizers", None)
    monkeypatch.setitem(sys.modules, "matminer.featurizers.base", None)
    monkeypatch.delitem(sys.modules, "atomsets_tf.ext.matminer", raising=False)
    with pytest.raises(MissingExtraError, match=r'atomsets-tf\[matminer\]') as info:
        importlib.import_module("atomsets_tf.ext.matminer")
    assert isinstance(info.value, AtomSetsError)
