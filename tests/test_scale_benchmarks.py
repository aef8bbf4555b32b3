"""The scale benchmarks' building blocks: synthetic sets, cost-planned batches, the GPU script's commands.

The GPU script's full CPU smoke run (``bash benchmarks/gpu_scale.sh --cpu-smoke``, three short trainings on
2 logical CPUs) takes about 2 minutes, too long for the suite: it is a manual check. Here only its syntax
and the commands it would run (``--dry-run``) are checked.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from atomsets_tf.data.padding import cost_planned_batches, padded_length, size_bucketed_batches
from atomsets_tf.utils.io import shared_dir

ROOT = Path(__file__).resolve().parents[1]


def _synthetic():
    spec = importlib.util.spec_from_file_location("benchmarks_synthetic", ROOT / "benchmarks" / "synthetic.py")
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module


needs_shared = pytest.mark.skipif(shared_dir() is None, reason="shared/ not found")


@needs_shared
def test_synthetic_structure_k_is_the_same_in_every_set_and_seeded():
    syn = _synthetic()
    small, large = syn.SyntheticSet("jdft2d", 1000), syn.SyntheticSet("jdft2d", 10**6)
    n_parents = len(syn._parents("jdft2d")[0])
    for k in (0, 7, 999):
        assert small.id(k) == large.id(k) == f"syn-jdft2d-{k:06d}"
        assert small[k] == large[k] and small.recipe(k) == large.recipe(k)
    recipes = [small.recipe(k) for k in range(200)]
    low, high = syn.STRAIN_RANGE
    assert all(low <= r.strain < high for r in recipes)
    assert len({round(r.strain, 12) for r in recipes}) == len(recipes)  # one strain per copy
    swaps = [r.substitution for r in recipes if r.substitution]
    assert 0 < len(swaps) < len(recipes)
    assert all(syn.SUBSTITUTIONS[old] == new for old, new in swaps)
    # structure k is its parent's lattice scaled by the strain, the same sites (maybe one element swapped)
    parent = small._parents[recipes[5].parent]
    s = small[5]
    np.testing.assert_allclose(s.lattice.matrix, parent.lattice * recipes[5].strain)
    assert len(s) == len(parent.species)
    assert small.recipe(n_parents).parent == 0  # every parent before any twice
    assert syn.SyntheticSet("jdft2d", 1000, seed=1).recipe(5).strain != recipes[5].strain
    with pytest.raises(IndexError):
        small[1000]


@needs_shared
def test_synthetic_json_reads_back_as_a_table(tmp_path):
    from atomsets_tf.data.io import load

    data = _synthetic().SyntheticSet("perovskites", 6)
    table = load(data.write_json(tmp_path / "syn.json.gz"))
    assert table.ids == data.ids() and table.kind == "structure" and table.target_name == data.target_name
    assert table.inputs[4] == data[4]
    np.testing.assert_array_equal(table.targets, data.table().targets)


def _padded(sizes, batches):
    return sum(len(b) * padded_length(max(sizes[i] for i in b)) for b in batches)


def test_cost_planned_batches_cover_everything_within_the_caps():
    sizes = np.random.default_rng(5).integers(1, 900, size=400)
    for max_rows, cap, call_cost in ((32, 4096, 0.0), (1024, 16384, 2048.0), (7, None, 1e9)):
        batches = cost_planned_batches(sizes, max_rows, cap, call_cost)
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(sizes)))
        for b in batches:
            assert 1 <= len(b) <= max_rows
            if cap is not None and len(b) > 1:
                assert len(b) * padded_length(sizes[b].max()) <= cap
        assert [b.tolist() for b in batches] == [b.tolist() for b in cost_planned_batches(sizes, max_rows, cap,
                                                                                         call_cost)]
    # no call cost: at most the padding of fixed batches; a high one: fewer, fuller batches
    fixed = size_bucketed_batches(sizes, 32)
    assert _padded(sizes, cost_planned_batches(sizes, 32, None, 0.0)) <= _padded(sizes, fixed)
    assert len(cost_planned_batches(sizes, 1024, 16384, 1e6)) < len(cost_planned_batches(sizes, 1024, 16384, 0.0))


def test_tap_with_planned_batches_equals_fixed_batches():
    from pymatgen.core import Lattice, Structure

    from atomsets_tf.models.megnet.checkpoint import (
        BRANCHES,
        BlockSpec,
        DenseSpec,
        GraphConverterConfig,
        MEGNetArchitecture,
        ScalerConfig,
        Set2SetSpec,
    )
    from atomsets_tf.models.megnet.model import MEGNet, build_keras_model

    none = {b: [] for b in BRANCHES}
    block = BlockSpec("block", none, [8, 8], [8, 8], [8, 8], "softplus2", "mean", {b: f"add_{b}" for b in BRANCHES})
    arch = MEGNetArchitecture(
        n_vocab=95, embedding_dim=8, embedding_source="embedding", n_bond_features=10, n_state_features=2,
        preblock={b: [DenseSpec(f"pre_{b}", 8, "softplus2")] for b in BRANCHES}, blocks=[block, block],
        set2set={b: Set2SetSpec(f"set2set_{b}", 2, 4, "tanh", "hard_sigmoid") for b in ("atom", "bond")},
        concat_order=["atom", "bond", "state"], readout=[DenseSpec("output", 1, None)])
    converter = GraphConverterConfig(cutoff=4.0, centers=list(np.linspace(0.0, 5.0, 10)), width=0.5)
    keras_model, taps, _ = build_keras_model(arch, converter, ScalerConfig())
    megnet = MEGNet(keras_model, converter.cutoff, taps, architecture=arch)
    structures = [Structure(Lattice.cubic(a), ["Cs", "Cl"] * (1 + i % 3), [[0, 0, 0], [0.5, 0.5, 0.5]] * (1 + i % 3))
                  for i, a in enumerate(np.linspace(3.9, 4.6, 9))]
    names = ["V1", "E2", "u2", "v_r", "f", "prediction"]
    planned, fixed = megnet.tap(structures, names), megnet.tap(structures, names, batch_size=2)
    # the module's contract for any batching: every tap to float32 rounding (a matmul over another row count
    # may take another kernel)
    for name in ("V1", "E2", "u2"):
        for a, b in zip(planned[name], fixed[name], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name, atol in (("v_r", 1e-5), ("f", 1e-5), ("prediction", 2e-6)):
        np.testing.assert_allclose(planned[name], fixed[name], rtol=0, atol=atol)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_gpu_scale_script_parses_and_dry_runs_the_three_trainings():
    script = ROOT / "benchmarks" / "gpu_scale.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    for flags, replicas in ((["--dry-run"], None), (["--cpu-smoke", "--dry-run"], "--replicas 2")):
        out = subprocess.run(["bash", str(script), *flags], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.strip().splitlines()
        assert lines[0].startswith("python benchmarks/synthetic.py perovskites")
        trainings = [line for line in lines if "atomsets_tf.cli" in line]
        assert [t.split("atomsets_tf.cli ")[1].split()[0] for t in trainings] == ["fit", "retrain", "retrain"]
        for t in trainings:
            assert "--strategy mirrored" in t and "--mixed-precision" in t and "--epochs 2" in t
            assert (replicas in t) if replicas else "--replicas" not in t
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("Error:")
