"""MEGNet in Keras 3: load the published checkpoints, predict, and tap intermediate features.

Taps, in the AtomSets paper's notation (``k`` = 1..n_blocks; 3 in every published
model), with their level and, in brackets, the key of the same tensor in
``shared/golden/megnet`` (the original megnet's Keras 2.2.4 layer names;
:meth:`MEGNet.describe` prints the source layer of each tap for any checkpoint):

* ``V0`` (atom): the atom embedding of Z [``embedding_1``].
* ``Vk`` (atom): the atom output of graph block k **before** its residual add,
  maml's ``MEGNetSite`` convention, which the paper's numbers use [``meg_net_layer_k/0``].
* ``Vk_residual`` (atom): the atom stream after block k's residual add [``add_1``, ``add_4``, ``add_7``].
* ``Ek`` (bond): the bond output of block k before the add [``meg_net_layer_k/1``].
* ``Ek_residual`` (bond): after the add [``add_2``, ``add_5``, ``add_8``].
* ``uk`` (structure): the state output of block k before the add [``meg_net_layer_k/2``].
* ``uk_residual`` (structure): after the add [``add_3``, ``add_6``, ``add_9``].
* ``v_r`` (structure): the atom Set2Set readout [``set2_set_1``].
* ``e_r`` (structure): the bond Set2Set readout [``set2_set_2``].
* ``f`` (structure): ``[v_r, e_r, u3_residual]``, the input of the final MLP [``concatenate_1``].
* ``readout_1``, ``readout_2`` (structure): the final MLP's hidden layers [``dense_19``, ``dense_20``].
* ``raw_output`` (structure): the network output before de-scaling [``dense_21``].
* ``prediction`` (structure): de-scaled, as megnet's ``predict_structure`` [``prediction``].

The underlying :attr:`MEGNet.keras_model` maps the padded batch layout of
:mod:`atomsets_tf.models.megnet.graph` (``atoms``, ``atom_mask``, ``distance``,
``bond_mask``, ``index1``, ``index2``, ``state``) to a dict of every tap.

Numerics: on one machine, every tap up to the residual adds is bit-identical to
the original megnet (run under tf-keras on the same inputs), in any padded batch.
The Set2Set readouts match to a few 1e-6 (TensorFlow's float32 ``exp`` of the
last elements of a tensor may take a scalar code path, so padding can move them
by an ulp). A structure's result does not depend on the other structures of its
batch, to float32 rounding (on some CPUs bit for bit up to the graph blocks'
outputs; on others a matmul over another row count takes another kernel, and the
graph blocks move by about 1e-5 relative).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from atomsets_tf import presets
from atomsets_tf.data.inputs import as_table, is_structure
from atomsets_tf.errors import CheckpointError, DataFormatError, UnknownPresetError, UnknownTapError
from atomsets_tf.models.base import downstream_layers
from atomsets_tf.models.megnet.activations import keras2_activation
from atomsets_tf.models.megnet.batches import MAX_PADDED_BONDS, plan_batches
from atomsets_tf.models.megnet.checkpoint import (
    BRANCHES,
    GraphConverterConfig,
    MEGNetArchitecture,
    MEGNetCheckpoint,
    ScalerConfig,
    read_checkpoint,
)
from atomsets_tf.models.megnet.graph import MEGNetGraph, batch_graphs, input_shapes, structure_to_graph
from atomsets_tf.models.megnet.layers import ExtensiveTargetScaler, GaussianExpansion, MEGNetBlock, MEGNetSet2Set
from atomsets_tf.utils.progress import counter_callback

INPUT_NAMES = ("atoms", "atom_mask", "distance", "bond_mask", "index1", "index2", "state")
_BRANCH_TAG = {"atom": "V", "bond": "E", "state": "u"}


#: The name of every MEGNet's Keras model: a saved ``.keras`` file names its family with it (``config.name``).
KERAS_MODEL_NAME = "megnet"


def tap_level(name: str) -> str:
    """``"atom"``, ``"bond"`` or ``"structure"`` for a tap name of this module's scheme."""
    if name.startswith("V"):
        return "atom"
    if name.startswith("E"):
        return "bond"
    return "structure"


def _activation(name: str | None, where: str):
    try:
        return keras2_activation(name)
    except KeyError as exc:
        raise CheckpointError(f"{where}: {exc.args[0]}") from exc


class _ModelParts:
    """What :func:`build_keras_model` collects while it wires the layers: outputs, tap info, layer map."""

    def __init__(self) -> None:
        self.outputs: dict[str, Any] = {}
        self.taps: dict[str, dict[str, Any]] = {}
        self.layer_map: dict[str, str] = {}

    def tap(self, name: str, tensor, source: str, description: str) -> None:
        """Record ``tensor`` as the output ``name``, with its level, width, source layer and meaning."""
        self.outputs[name] = tensor
        self.taps[name] = {
            "level": tap_level(name),
            "dim": int(tensor.shape[-1]),
            "source": source,
            "description": description,
        }

    def dense(self, x, spec, name: str):
        """Apply a Dense layer for the checkpoint's ``spec``, mapped to its source layer."""
        layer = keras.layers.Dense(spec.units, activation=_activation(spec.activation, spec.source), name=name)
        self.layer_map[name] = spec.source
        return layer(x)

    def dense_stack(self, x, chain, prefix: str):
        """Apply the Dense layers ``chain``, named ``{prefix}_0``, ``{prefix}_1``..."""
        for i, d in enumerate(chain):
            x = self.dense(x, d, f"{prefix}_{i}")
        return x


def _model_inputs(n_state: int) -> dict[str, Any]:
    """The padded batch inputs (see :data:`~atomsets_tf.models.megnet.graph.INPUT_SCHEMA`)."""
    return {name: keras.Input(shape, dtype=dtype, name=name) for name, (dtype, shape) in input_shapes(n_state).items()}


def _embedding_and_preblock(parts: _ModelParts, arch: MEGNetArchitecture, converter: GraphConverterConfig, inputs):
    """The atom embedding (tap ``V0``), the Gaussian bond expansion and the pre-block Dense stacks."""
    emb = keras.layers.Embedding(arch.n_vocab, arch.embedding_dim, name="atom_embedding")
    parts.layer_map["atom_embedding"] = arch.embedding_source
    v0 = emb(inputs["atoms"])
    parts.tap("V0", v0, arch.embedding_source, "atom embedding of Z")
    e0 = GaussianExpansion(converter.centers, converter.width, cutoff=converter.cutoff, name="gaussian_expansion")(
        inputs["distance"]
    )
    return {
        "atom": parts.dense_stack(v0, arch.preblock["atom"], "preblock_atom"),
        "bond": parts.dense_stack(e0, arch.preblock["bond"], "preblock_bond"),
        "state": parts.dense_stack(inputs["state"], arch.preblock["state"], "preblock_state"),
    }


def _graph_block(parts: _ModelParts, k: int, block, inputs, streams: dict[str, Any]) -> dict[str, Any]:
    """Graph block ``k`` with its Dense pre-layers and residual adds (taps ``Vk``, ``Ek``, ``uk`` and ``_residual``)."""
    x = {b: parts.dense_stack(streams[b], block.ff[b], f"block_{k}_{b}_ff") for b in BRANCHES}
    layer = MEGNetBlock(
        block.units_v,
        block.units_e,
        block.units_u,
        activation=_activation(block.activation, block.source),
        pool_method=block.pool_method,
        name=f"megnet_block_{k}",
    )
    parts.layer_map[layer.name] = block.source
    graph_inputs = [inputs[n] for n in ("index1", "index2", "atom_mask", "bond_mask")]
    v, e, u = layer([x["atom"], x["bond"], x["state"], *graph_inputs])
    out = {"atom": v, "bond": e, "state": u}
    streams = dict(streams)
    for j, b in enumerate(BRANCHES):
        t = _BRANCH_TAG[b]
        parts.tap(f"{t}{k}", out[b], f"{block.source}/{j}", f"{b} output of graph block {k}, before the residual add")
        streams[b] = keras.layers.Add(name=f"block_{k}_add_{b}")([streams[b], out[b]])
        parts.tap(
            f"{t}{k}_residual", streams[b], block.residual_sources[b], f"{b} stream after graph block {k}'s residual add"
        )
    return streams


def _set2set_readouts(parts: _ModelParts, arch: MEGNetArchitecture, inputs, streams: dict[str, Any]):
    """The atom and bond Set2Set readouts (taps ``v_r``, ``e_r``) and the final state: by branch."""
    masks = {"atom": inputs["atom_mask"], "bond": inputs["bond_mask"]}
    readouts = {}
    for b, tag, desc in (("atom", "v_r", "atom Set2Set readout"), ("bond", "e_r", "bond Set2Set readout")):
        s = arch.set2set[b]
        layer = MEGNetSet2Set(
            n_hidden=s.n_hidden,
            steps=s.steps,
            activation=_activation(s.activation_lstm, s.source),
            recurrent_activation=_activation(s.recurrent_activation, s.source),
            carry_cell_state=False,  # megnet re-zeroes the LSTM cell state at every step
            name=f"set2set_{b}",
        )
        parts.layer_map[layer.name] = s.source
        readouts[b] = layer([streams[b], masks[b]])
        parts.tap(tag, readouts[b], s.source, f"{desc} (T={s.steps}, n_hidden={s.n_hidden})")
    readouts["state"] = streams["state"]
    return readouts


#: The layer whose output (the concatenated readouts, tap ``f``) the head takes: the final MLP and the target
#: scaler are the layers after it (:func:`head_layers`).
HEAD_INPUT = "concatenate_f"


def head_layers(keras_model: keras.Model) -> list:
    """The head of a MEGNet's functional model that ``head`` transfer mode retrains: every layer after the
    concatenated readouts (the final MLP, the target scaler, a classifier added on it), found by the graph."""
    return downstream_layers(keras_model, keras_model.get_layer(HEAD_INPUT))


def _final_mlp(parts: _ModelParts, arch: MEGNetArchitecture, readouts: dict[str, Any]):
    """The concatenated readout (tap ``f``) through the final MLP: the raw output (tap ``raw_output``)."""
    f = keras.layers.Concatenate(axis=-1, name=HEAD_INPUT)([readouts[b] for b in arch.concat_order])
    names = {"atom": "v_r", "bond": "e_r", "state": f"u{len(arch.blocks)}_residual"}
    parts.tap("f", f, arch.concat_source, "readout [" + ", ".join(names[b] for b in arch.concat_order) + "]")
    x = f
    for i, d in enumerate(arch.readout):
        x = parts.dense(x, d, f"readout_{i}")
        if i < len(arch.readout) - 1:
            parts.tap(f"readout_{i + 1}", x, d.source, f"hidden layer {i + 1} of the final MLP")
    parts.tap("raw_output", x, arch.readout[-1].source, "network output before de-scaling")
    return x


def build_keras_model(
    arch: MEGNetArchitecture,
    converter: GraphConverterConfig,
    scaler: ScalerConfig,
) -> tuple[keras.Model, dict[str, dict[str, Any]], dict[str, str]]:
    """Build the Keras 3 functional MEGNet for ``arch`` (weights not loaded).

    Returns:
        ``(model, taps, layer_map)``: the model (dict of padded inputs -> dict of
        every tap), per-tap info (``level``, ``dim``, ``source`` = the checkpoint's
        layer / output it corresponds to, ``description``), and the map from our
        layer names to the checkpoint's layer names (for loading weights).
    """
    inputs = _model_inputs(arch.n_state_features or 2)
    parts = _ModelParts()
    streams = _embedding_and_preblock(parts, arch, converter, inputs)
    for k, block in enumerate(arch.blocks, start=1):
        streams = _graph_block(parts, k, block, inputs, streams)
    raw = _final_mlp(parts, arch, _set2set_readouts(parts, arch, inputs, streams))
    pred = ExtensiveTargetScaler(scaler.mean, scaler.std, scaler.is_intensive, name="target_scaler")(
        [raw, inputs["atom_mask"]]
    )
    parts.tap("prediction", pred, "prediction", f"de-scaled prediction ({_scaler_text(scaler)})")
    model = keras.Model(inputs=inputs, outputs=parts.outputs, name=KERAS_MODEL_NAME)
    return model, parts.taps, parts.layer_map


def _scaler_text(s: ScalerConfig) -> str:
    if s.kind == "DummyScaler":
        return "DummyScaler, identity"
    return f"StandardScaler mean={s.mean:g}, std={s.std:g}, {'intensive' if s.is_intensive else 'extensive'}"


def load_weights(model: keras.Model, layer_map: dict[str, str], weights: dict[str, dict[str, np.ndarray]], path: str):
    """Assign checkpoint arrays to ``model``'s layers, by layer and weight name, checking shapes."""
    for ours, theirs in layer_map.items():
        layer = model.get_layer(ours)
        arrays = weights.get(theirs, {})
        for var in layer.weights:
            key = var.name.split("/")[-1].split(":")[0]
            if key not in arrays:
                raise CheckpointError(f"{path}: layer {theirs!r} has no weight {key!r} (has {sorted(arrays)})")
            arr = arrays[key]
            if tuple(arr.shape) != tuple(var.shape):
                raise CheckpointError(
                    f"{path}: weight {theirs}/{key} has shape {arr.shape}, the architecture needs {tuple(var.shape)}"
                )
            var.assign(arr.astype("float32"))


@keras.saving.register_keras_serializable(package="atomsets_tf")
class MEGNet(keras.Model):
    """A MEGNet model in Keras 3, with megnet's graph construction, predictions and feature taps.

    A registered ``keras.Model``: called on a padded batch it gives the de-scaled prediction ``[B, 1]`` (what
    training fits), it saves as one ``.keras`` file with its cutoff, taps, source and metadata, and K of them form
    an :class:`~atomsets_tf.models.ensemble.Ensemble`. Its functional network, :attr:`keras_model`, gives every
    tap.

    Build it with :meth:`from_checkpoint` (a megnet ``.hdf5`` + ``.hdf5.json``),
    :meth:`from_preset` (e.g. ``"megnet-mp-2019.4.1-formation_energy"``) or
    :meth:`load` (a ``.keras`` file written by :meth:`save`).

    Attributes:
        keras_model: the functional ``keras.Model``: padded inputs (``atoms`` int32
            ``[B, N]``, ``atom_mask`` ``[B, N]``, ``distance`` ``[B, M]``, ``bond_mask``
            ``[B, M]``, ``index1`` / ``index2`` int32 ``[B, M]`` local to each graph,
            ``state`` ``[B, 2]``) -> dict of every tap (``[B, N, d]`` atom level,
            ``[B, M, d]`` bond level, ``[B, d]`` structure level).
        cutoff: the graph cutoff in Å.
        source: where the model came from.
        metadata: the checkpoint's metadata (name, unit, description...).

    Args:
        keras_model: the functional model (see :func:`build_keras_model`).
        cutoff: the graph cutoff in Å.
        taps: per-tap info (``level``, ``dim``, ``source``, ``description``);
            default: levels and widths read from the model's outputs.
        source: where the model came from, for messages.
        metadata: the checkpoint's metadata.
        architecture: the checkpoint's architecture, for :meth:`describe`.

    Call arguments:
        inputs: the padded batch (see Input shape). :meth:`predict` and :meth:`tap` take pymatgen structures (or
            their ``as_dict()``) instead, build megnet's graphs and run the padded batches.
        training: passed to the network.

    Input shape:
        A dict: ``atoms``, ``atom_mask`` ``(batch, n_atoms)``; ``distance``, ``bond_mask``, ``index1``,
        ``index2`` ``(batch, n_bonds)``; ``state`` ``(batch, n_state)``.

    Output shape:
        ``(batch, k)``: the de-scaled prediction (the ``prediction`` tap). :attr:`keras_model` gives a dict of
        every tap: ``(batch, n_atoms, d)`` atom level, ``(batch, n_bonds, d)`` bond level, ``(batch, d)``
        structure level.

    Example (a tiny randomly initialised MEGNet; the published ones come from
    :meth:`from_preset` or :meth:`from_checkpoint`):

    >>> from pymatgen.core import Lattice, Structure
    >>> from atomsets_tf.models.megnet.checkpoint import BlockSpec, DenseSpec, Set2SetSpec
    >>> none = {b: [] for b in BRANCHES}
    >>> block = BlockSpec("block", none, [4, 4], [4, 4], [4, 4], "softplus2", "mean", {b: f"add_{b}" for b in BRANCHES})
    >>> arch = MEGNetArchitecture(
    ...     n_vocab=95, embedding_dim=4, embedding_source="embedding", n_bond_features=10, n_state_features=2,
    ...     preblock={b: [DenseSpec(f"pre_{b}", 4, "softplus2")] for b in BRANCHES}, blocks=[block],
    ...     set2set={b: Set2SetSpec(f"set2set_{b}", 2, 4, "tanh", "hard_sigmoid") for b in ("atom", "bond")},
    ...     concat_order=["atom", "bond", "state"], readout=[DenseSpec("output", 1, None)])
    >>> converter = GraphConverterConfig(cutoff=4.0, centers=list(np.linspace(0.0, 5.0, 10)), width=0.5)
    >>> keras_model, taps, _ = build_keras_model(arch, converter, ScalerConfig())
    >>> megnet = MEGNet(keras_model, converter.cutoff, taps, architecture=arch)
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> megnet.predict([cscl]).shape
    (1,)
    >>> megnet.tap([cscl], ["V1", "f"])["V1"][0].shape
    (2, 4)
    """

    def __init__(
        self,
        keras_model: keras.Model,
        cutoff: float,
        taps: dict[str, dict[str, Any]] | None = None,
        source: str = "",
        metadata: dict | None = None,
        architecture: MEGNetArchitecture | None = None,
        **kwargs,
    ):
        outs = keras_model.output if isinstance(keras_model.output, dict) else {}
        if not outs:
            raise CheckpointError("the Keras model's outputs are not a dict of taps")
        super().__init__(name=kwargs.pop("name", "megnet"), **kwargs)
        self.keras_model = keras_model
        self.cutoff = float(cutoff)
        self.source = source
        self.metadata = dict(metadata or {})
        self.architecture = architecture
        self._taps = taps or {
            name: {"level": tap_level(name), "dim": int(t.shape[-1]), "source": "", "description": ""}
            for name, t in outs.items()
        }
        emb = keras_model.get_layer("atom_embedding")
        self.n_vocab = int(emb.input_dim)
        self.n_state = int(keras_model.input["state"].shape[-1])
        self._fn: Callable | None = None
        self.built = True  # the network is built; the wrapper has no weights of its own

    def call(self, inputs, training=None):
        return self.keras_model(inputs, training=training)["prediction"]

    def get_config(self) -> dict:
        return {"name": self.name, "keras_model": keras.saving.serialize_keras_object(self.keras_model),
                "cutoff": self.cutoff, "taps": {k: dict(v) for k, v in self._taps.items()}, "source": self.source,
                "metadata": dict(self.metadata)}

    @classmethod
    def from_config(cls, config: dict) -> MEGNet:
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("keras_model"))
        return cls(network, **config)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, hdf5_path: str | os.PathLike, json_path: str | os.PathLike | None = None) -> MEGNet:
        """Load a megnet checkpoint (``.hdf5``, with its ``.hdf5.json`` beside it unless given).

        Raises:
            CheckpointError: a file that is missing, damaged, or not a MEGNet checkpoint.
        """
        ckpt = read_checkpoint(hdf5_path, json_path)
        return cls.from_checkpoint_data(ckpt)

    @classmethod
    def from_checkpoint_data(cls, ckpt: MEGNetCheckpoint) -> MEGNet:
        """Build from an already read :class:`~atomsets_tf.models.megnet.checkpoint.MEGNetCheckpoint`."""
        model, taps, layer_map = build_keras_model(ckpt.architecture, ckpt.converter, ckpt.scaler)
        load_weights(model, layer_map, ckpt.weights, ckpt.path)
        return cls(model, ckpt.converter.cutoff, taps, ckpt.path, ckpt.metadata, ckpt.architecture)

    @classmethod
    def from_preset(cls, name: str, download: bool = True) -> MEGNet:
        """Load a registered preset (see :func:`atomsets_tf.presets.list_presets`).

        Raises:
            UnknownPresetError: an unknown name, or files not found locally and not downloadable.
        """
        kind = presets.get_preset(name).kind
        if kind != "megnet":
            raise UnknownPresetError(f"preset {name!r} is a {kind} model, not a MEGNet")
        paths = presets.resolve(name, download=download)
        model = cls.from_checkpoint(paths["hdf5"], paths["json"])
        model.source = f"preset {name} ({paths['hdf5']})"
        return model

    @classmethod
    def load(cls, path: str | os.PathLike) -> MEGNet:
        """Load a ``.keras`` file written by :meth:`save` (safe mode on): a MEGNet with its metadata, or (a file
        of an earlier layout) its bare functional network, whose cutoff is read from its Gaussian expansion."""
        try:
            model = keras.models.load_model(os.fspath(path), safe_mode=True, compile=False)
        except Exception as exc:
            why = " ".join(str(exc).split())[:300]
            raise CheckpointError(f"{os.fspath(path)}: cannot load as a .keras MEGNet ({why})") from exc
        if not isinstance(model, MEGNet):
            model = cls(model, model.get_layer("gaussian_expansion").cutoff)
        model.source = os.fspath(path)
        return model

    # ------------------------------------------------------------------ description
    @property
    def tap_names(self) -> list[str]:
        """Every tap name, in network order."""
        return list(self._taps)

    def tap_level(self, name: str) -> str:
        """``"atom"``, ``"bond"`` or ``"structure"``."""
        self._check_taps([name])
        return self._taps[name]["level"]

    def is_atom_level(self, name: str) -> bool:
        """Whether ``name`` gives one row per atom (``V0``, ``Vk``, ``Vk_residual``)."""
        return self.tap_level(name) == "atom"

    def tap_dim(self, name: str) -> int:
        """Feature width of a tap."""
        self._check_taps([name])
        return int(self._taps[name]["dim"])

    def describe(self) -> str:
        """A text description: blocks, widths, graph settings and every tap with its source layer."""
        ge = self.keras_model.get_layer("gaussian_expansion")
        scaler = self.keras_model.get_layer("target_scaler")
        lines = [
            f"MEGNet from {self.source or '(in memory)'}",
            f"  graph: cutoff {self.cutoff:g} Å, {len(ge.centers)} Gaussians on [{ge.centers[0]:g}, {ge.centers[-1]:g}] Å,"
            f" width {ge.width:g}; state {self.n_state} zeros",
            f"  embedding: {self.n_vocab} x {self.tap_dim('V0')} (rows indexed by Z)",
        ]
        arch = self.architecture
        if arch is not None:
            pre = ", ".join(f"{b} {'-'.join(str(d.units) for d in arch.preblock[b])}" for b in BRANCHES)
            lines.append(f"  pre-block Dense: {pre}")
            for k, b in enumerate(arch.blocks, start=1):
                ff = ", ".join(f"{br} {'-'.join(str(d.units) for d in b.ff[br])}" for br in BRANCHES if b.ff[br])
                lines.append(
                    f"  block {k} ({b.source}): {'Dense ' + ff + '; ' if ff else ''}"
                    f"phi_e {'-'.join(map(str, b.units_e))}, phi_v {'-'.join(map(str, b.units_v))}, "
                    f"phi_u {'-'.join(map(str, b.units_u))}, {b.activation}, {b.pool_method} pooling; residual add"
                )
            for br, s in arch.set2set.items():
                lines.append(f"  Set2Set {br} ({s.source}): T={s.steps}, n_hidden={s.n_hidden}")
            lines.append("  final MLP: " + " -> ".join(f"{d.units} ({d.activation})" for d in arch.readout))
        else:
            n_blocks = sum(1 for n in self._taps if n.startswith("V") and n[1:].isdigit() and n != "V0")
            lines.append(f"  {n_blocks} graph blocks")
        lines.append(
            f"  target scaler: mean={scaler.mean:g}, std={scaler.std:g}, "
            f"{'intensive' if scaler.is_intensive else 'extensive (x n_atoms)'}"
        )
        lines.append("taps (name, level, width, source layer in the checkpoint, meaning):")
        width = max(len(n) for n in self._taps)
        for name, info in self._taps.items():
            lines.append(
                f"  {name:<{width}}  {info['level']:<9}  {info['dim']:>3}  {info['source'] or '-':<20}  {info['description']}"
            )
        return "\n".join(lines)

    def submodel(self, names: Sequence[str] | str) -> keras.Model:
        """A ``keras.Model`` on the same layers (shared weights) with only the taps ``names`` as outputs.

        With one name the output is that tensor; with several, a dict. For fine-tuning,
        e.g. ``submodel("raw_output")`` (before de-scaling) or ``submodel("f")``.
        """
        if isinstance(names, str):
            self._check_taps([names])
            return keras.Model(self.keras_model.input, self.keras_model.output[names])
        self._check_taps(names)
        return keras.Model(self.keras_model.input, {n: self.keras_model.output[n] for n in names})

    def embedding_table(self) -> np.ndarray:
        """The V0 table, float32 ``(n_vocab, d)``, row ``Z`` = element with atomic number Z (row 0 unused)."""
        return np.asarray(self.keras_model.get_layer("atom_embedding").embeddings.numpy(), dtype=np.float32)

    # ------------------------------------------------------------------ graphs
    def graph(self, structure: Any, label: str | None = None) -> MEGNetGraph:
        """megnet's crystal graph of one structure (see :func:`~atomsets_tf.models.megnet.graph.structure_to_graph`)."""
        return structure_to_graph(
            structure, self.cutoff, state=np.zeros(self.n_state), max_z=self.n_vocab - 1, label=label
        )

    def graphs(self, structures: Iterable, ids: Sequence[str] | None = None) -> list[MEGNetGraph]:
        """Graphs of many structures; errors name the structure by its id (or position)."""
        structures = list(structures)
        if ids is not None and len(ids) != len(structures):
            raise DataFormatError(f"{len(ids)} ids for {len(structures)} structures")
        return [self.graph(s, label=str(ids[i]) if ids is not None else f"#{i}") for i, s in enumerate(structures)]

    # ------------------------------------------------------------------ running
    def _check_taps(self, names: Iterable[str]) -> None:
        unknown = [n for n in names if n not in self._taps]
        if unknown:
            raise UnknownTapError(f"unknown tap {unknown[0]!r}; valid taps: {', '.join(self._taps)}")

    def _function(self) -> Callable:
        """The model as one ``tf.function`` over every tap, traced once (no retracing across batch shapes).

        Computing every tap costs little more than the prediction alone (they are its
        intermediate tensors), and one graph means a tap's values never depend on
        which other taps were requested.
        """
        if self._fn is None:
            import tensorflow as tf  # optional: tf.function needs the TensorFlow backend

            model = self.keras_model
            signature = {
                "atoms": tf.TensorSpec([None, None], tf.int32),
                "atom_mask": tf.TensorSpec([None, None], tf.float32),
                "distance": tf.TensorSpec([None, None], tf.float32),
                "bond_mask": tf.TensorSpec([None, None], tf.float32),
                "index1": tf.TensorSpec([None, None], tf.int32),
                "index2": tf.TensorSpec([None, None], tf.int32),
                "state": tf.TensorSpec([None, self.n_state], tf.float32),
            }

            @tf.function(input_signature=[signature])
            def fn(batch):
                return model(batch, training=False)

            self._fn = fn
        return self._fn

    def run_graphs(
        self,
        graphs: Sequence[MEGNetGraph],
        names: Sequence[str],
        batch_size: int | None = None,
        progress: bool | Callable[[int, int], None] = False,
        max_padded_bonds: int | None = MAX_PADDED_BONDS,
    ) -> dict[str, list[np.ndarray] | np.ndarray]:
        """Compute taps for prebuilt graphs (see :meth:`tap`)."""
        names = tuple(dict.fromkeys(names))
        self._check_taps(names)
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be at least 1 (or None: batches planned by cost)")
        n = len(graphs)
        fn = self._function()
        per: dict[str, list] = {name: [None] * n for name in names}
        report = _progress_callback(progress)
        done = 0
        for idx in plan_batches([g.n_bonds for g in graphs], batch_size, max_padded_bonds):
            chunk = [graphs[i] for i in idx]
            out = fn(batch_graphs(chunk))
            for name in names:
                arr = out[name].numpy()
                level = self._taps[name]["level"]
                for r, (i, g) in enumerate(zip(idx, chunk, strict=True)):
                    if level == "atom":
                        per[name][i] = arr[r, : g.n_atoms]
                    elif level == "bond":
                        per[name][i] = arr[r, : g.n_bonds]
                    else:
                        per[name][i] = arr[r]
            done += len(idx)
            if report:
                report(done, n)
        result: dict[str, list[np.ndarray] | np.ndarray] = {}
        for name in names:
            if self._taps[name]["level"] == "structure":
                d = self._taps[name]["dim"]
                result[name] = np.stack(per[name]).astype(np.float32) if n else np.zeros((0, d), np.float32)
            else:
                result[name] = per[name]
        return result

    def tap(
        self,
        structures: Iterable,
        names: Sequence[str] | str,
        batch_size: int | None = None,
        progress: bool | Callable[[int, int], None] = False,
        ids: Sequence[str] | None = None,
        max_padded_bonds: int | None = MAX_PADDED_BONDS,
    ) -> dict[str, list[np.ndarray] | np.ndarray]:
        """Intermediate features of ``structures``.

        Args:
            structures: pymatgen ``Structure`` objects (or their ``as_dict()``), or any structures
                :func:`~atomsets_tf.data.inputs.as_table` reads: ASE ``Atoms``, a ``Table``, a ``DataFrame``
                with a structure column (read and checked as a data file's are).
            names: tap names (see :attr:`tap_names`), e.g. ``["V1", "f"]``.
            batch_size: most structures per padded batch (batches are bucketed by size);
                ``None`` (default): batches planned by cost, see
                :func:`~atomsets_tf.models.megnet.batches.plan_batches`.
            max_padded_bonds: split a batch further when rows x padded bonds would exceed this
                (``None``: no cap); see :func:`~atomsets_tf.models.megnet.batches.plan_batches`.
            progress: ``True`` to report progress on stderr, or a callable ``(done, total)``.
            ids: names of the structures, for error messages (default: their position, or the ids of a
                ``Table`` / ``DataFrame`` / ``Atoms.info``).

        Returns:
            For an atom-level tap, a list with one float32 ``(n_atoms, d)`` array per
            structure, rows in site order; for a bond-level tap, one ``(n_bonds, d)``
            array per structure; for a structure-level tap, a float32 ``(n, d)`` array.

        Raises:
            UnknownTapError, EmptyStructureError, IsolatedAtomError, UnknownElementError, DataFormatError.
        """
        if isinstance(names, str):
            names = [names]
        self._check_taps(names)
        structures, ids = _structures_and_ids(structures, ids)
        return self.run_graphs(self.graphs(structures, ids), names, batch_size, progress, max_padded_bonds)

    def predict(
        self,
        structures: Iterable,
        batch_size: int | None = None,
        progress: bool | Callable[[int, int], None] = False,
        ids: Sequence[str] | None = None,
        max_padded_bonds: int | None = MAX_PADDED_BONDS,
    ) -> np.ndarray:
        """De-scaled predictions, as megnet's ``predict_structure``: float32 ``(n,)`` (``(n, k)`` for k targets).

        ``structures`` and the other arguments: as :meth:`tap`'s.
        """
        out = self.tap(
            structures,
            ["prediction"],
            batch_size=batch_size,
            progress=progress,
            ids=ids,
            max_padded_bonds=max_padded_bonds,
        )["prediction"]
        return out[:, 0] if out.shape[1] == 1 else out

    def __repr__(self) -> str:
        return f"MEGNet(source={self.source!r}, cutoff={self.cutoff:g}, taps={len(self._taps)})"


def _structures_and_ids(structures, ids: Sequence[str] | None) -> tuple[list, Sequence[str] | None]:
    """``structures`` as pymatgen structures (or their dicts) and their ids: a list or tuple of those passes as it
    is (the families' tables were checked when read); anything else (ASE ``Atoms``, a ``Table``, a ``DataFrame``,
    one structure) is read by :func:`~atomsets_tf.data.inputs.as_table`.

    Raises:
        DataFormatError: compositions rather than structures, or an entry that is none.
    """
    if isinstance(structures, (list, tuple)):
        if all(isinstance(s, Mapping) or is_structure(s) for s in structures):
            return list(structures), ids
        text = next((k for k, s in enumerate(structures) if isinstance(s, str)), None)
        if text is not None:
            name = ids[text] if ids is not None and len(ids) == len(structures) else text
            raise DataFormatError(f"MEGNet needs structures, but entry {name} is the text {structures[text]!r}")
    table = as_table(structures, ids=ids)
    if table.kind != "structure":
        raise DataFormatError(f"MEGNet needs structures, but {table.source or 'the data'} holds {table.kind}s")
    return table.inputs, table.ids


def _progress_callback(progress) -> Callable[[int, int], None] | None:
    if callable(progress):
        return progress
    if not progress:
        return None
    return counter_callback("MEGNet", "structure")


def load_megnet(model: str | os.PathLike) -> MEGNet:
    """A checkpoint path (``.hdf5``, or ``.keras``) or a preset name -> :class:`MEGNet`."""
    p = Path(os.fspath(model))
    if p.suffix == ".keras" and p.is_file():
        return MEGNet.load(p)
    if p.is_file() or p.suffix in (".hdf5", ".h5"):
        return MEGNet.from_checkpoint(p)
    return MEGNet.from_preset(str(model))
