"""Transfer modes: scratch, head only, full (with a lower backbone learning rate)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from atomsets_tf.models import AtomSets
from atomsets_tf.training.transfer import (
    PartRateAdam,
    TransferMode,
    apply_mode,
    backbone_variable_paths,
)

RNG = np.random.default_rng(0)
X = {"atoms": RNG.integers(1, 80, size=(32, 6)).astype("int32"),
     "weights": RNG.uniform(0.1, 1, size=(32, 6)).astype("float32")}
Y = RNG.normal(size=(32, 1)).astype("float32")


def is_head(layer) -> bool:
    return layer.name.startswith(("head_dense", "output", "target_scaler"))


def pretrained() -> AtomSets:
    keras.utils.set_random_seed(1)
    model = AtomSets(units=16, readout=["mean", "set2set"])
    model(X)
    return model


def train(model, optimizer=None, epochs=3):
    model.compile(optimizer or keras.optimizers.Adam(1e-2), "mae")
    model.fit(X, Y, epochs=epochs, batch_size=8, verbose=0)
    return model


def by_layer(model):
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}


def test_head_mode_keeps_the_backbone_bit_identical():
    parent = pretrained()
    before = by_layer(parent)
    model = train(apply_mode(parent, TransferMode.HEAD, is_head))
    after = by_layer(model)
    changed = {name for name in before if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))}
    assert changed and all(is_head(model.get_layer(n)) for n in changed)
    assert "head_dense_1" in changed and "element_embedding" not in changed and "set2set_readout" not in changed


def test_scratch_mode_has_same_architecture_and_fresh_weights():
    parent = pretrained()
    fresh = apply_mode(parent, "scratch", is_head)
    assert [w.shape for w in fresh.get_weights()] == [w.shape for w in parent.get_weights()]
    assert not np.array_equal(fresh.get_layer("atom_dense_1").get_weights()[0],
                              parent.get_layer("atom_dense_1").get_weights()[0])
    assert all(layer.trainable for layer in fresh.layers)


@pytest.mark.parametrize("factor", [0.0, 0.1, 1.0])
def test_full_mode_backbone_learning_rate(factor):
    parent = pretrained()
    before = by_layer(parent)
    model = apply_mode(parent, TransferMode.FULL, is_head)
    opt = PartRateAdam(backbone_paths=backbone_variable_paths(model, is_head), backbone_lr_factor=factor,
                       learning_rate=1e-2)
    train(model, opt, epochs=1)
    after = by_layer(model)
    moved = np.abs(after["atom_dense_1"][0] - before["atom_dense_1"][0]).max()
    head_moved = np.abs(after["head_dense_1"][0] - before["head_dense_1"][0]).max()
    if factor == 0.0:
        assert moved == 0.0 and head_moved > 0
    else:
        # Adam moves each weight by about lr per step, so the backbone moves ~factor times as far as the head.
        assert moved == pytest.approx(factor * head_moved, rel=0.5)


def test_full_mode_factor_one_equals_plain_adam():
    a = train(apply_mode(pretrained(), "full", is_head), keras.optimizers.Adam(1e-2), epochs=1)
    b_model = apply_mode(pretrained(), "full", is_head)
    b = train(b_model, PartRateAdam(backbone_paths=backbone_variable_paths(b_model, is_head),
                                    backbone_lr_factor=1.0, learning_rate=1e-2), epochs=1)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_unknown_mode():
    from atomsets_tf.errors import AtomSetsError

    with pytest.raises(AtomSetsError, match="transfer mode must be one of scratch, head, full"):
        TransferMode.parse("partial")
