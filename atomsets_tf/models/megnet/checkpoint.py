"""Read a published megnet checkpoint (Keras 2 ``.hdf5`` + ``.hdf5.json``) without megnet or tf-keras.

* The ``.hdf5`` is read with h5py only. The architecture comes from the file's
  ``model_config`` attribute: the Keras 2 functional graph is walked by its
  connections (not by layer names), so both naming generations load: Keras
  2.2.4's auto-names (``embedding_1``, ``dense_1``, ``meg_net_layer_1``,
  ``add_1``, ``set2_set_1``...) and megnet >= 1.2's (``atom_embedding``,
  ``preblock_atom_0``, ``megnet_0``, ``block_0_add_atom``, ``set2set_atom``,
  ``readout_0``...). Only the layer classes megnet uses are accepted.
  Weights are then read by layer and weight name.
* The ``.hdf5.json`` (a monty-serialised graph converter and target scaler) is
  parsed with an allow-list of class names and fields. Nothing named by the
  file is ever imported or instantiated.

Anything else (not HDF5, truncated, not a MEGNet model, an unexpected class)
raises :class:`~atomsets_tf.errors.CheckpointError` with a one-line message.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atomsets_tf.errors import CheckpointError

BRANCHES = ("atom", "bond", "state")

#: Keras 2 layer classes a megnet model may contain.
ALLOWED_LAYER_CLASSES = {
    "InputLayer",
    "Embedding",
    "Dense",
    "MEGNetLayer",
    "Add",
    "Set2Set",
    "Concatenate",
    "Dropout",
}

#: Allowed ``@class`` names in the ``.hdf5.json``, by the key they appear under.
ALLOWED_JSON_CLASSES = {
    "graph_converter": {"CrystalGraph", "StructureGraphFixedRadius"},
    "atom_converter": {"DummyConverter"},
    "bond_converter": {"GaussianDistance"},
    "nn_strategy": {"MinimumDistanceNNAll"},
    "target_scaler": {"StandardScaler", "DummyScaler"},
    "centers": {"array"},
}


@dataclass
class DenseSpec:
    """One Dense layer of the checkpoint."""

    source: str
    units: int
    activation: str | None


@dataclass
class BlockSpec:
    """One MEGNet graph block: its Dense pre-layers per branch and its MLP widths."""

    source: str
    ff: dict[str, list[DenseSpec]]
    units_v: list[int]
    units_e: list[int]
    units_u: list[int]
    activation: str | None
    pool_method: str
    residual_sources: dict[str, str]


@dataclass
class Set2SetSpec:
    """One megnet Set2Set readout."""

    source: str
    steps: int
    n_hidden: int
    activation_lstm: str | None
    recurrent_activation: str | None


@dataclass
class MEGNetArchitecture:
    """The architecture of a megnet model, as read from a checkpoint's config."""

    n_vocab: int
    embedding_dim: int
    embedding_source: str
    n_bond_features: int
    n_state_features: int
    preblock: dict[str, list[DenseSpec]]
    blocks: list[BlockSpec]
    set2set: dict[str, Set2SetSpec]
    concat_order: list[str]
    readout: list[DenseSpec]
    concat_source: str = ""
    keras_version: str = ""
    naming: str = ""


@dataclass
class GraphConverterConfig:
    """megnet's ``CrystalGraph`` settings."""

    cutoff: float
    centers: list[float]
    width: float


@dataclass
class ScalerConfig:
    """megnet's target scaler (``DummyScaler`` = mean 0, std 1, intensive)."""

    kind: str = "DummyScaler"
    mean: float = 0.0
    std: float = 1.0
    is_intensive: bool = True


@dataclass
class MEGNetCheckpoint:
    """Everything read from a megnet checkpoint."""

    path: str
    architecture: MEGNetArchitecture
    weights: dict[str, dict[str, np.ndarray]]
    converter: GraphConverterConfig
    scaler: ScalerConfig
    metadata: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- HDF5


def _fail(path: str | os.PathLike, why: str) -> CheckpointError:
    """A one-line :class:`CheckpointError` naming the file."""
    return CheckpointError(" ".join(f"{os.fspath(path)}: {why}".split()))


def _decode(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def read_hdf5(path: str | os.PathLike) -> tuple[MEGNetArchitecture, dict[str, dict[str, np.ndarray]]]:
    """Read the architecture and the weights of a megnet Keras 2 ``.hdf5``.

    Returns:
        ``(architecture, weights)`` with ``weights[layer_name][weight_name]`` arrays
        (weight names without scope and ``:0``, e.g. ``kernel``, ``weight_v_0``).

    Raises:
        CheckpointError: unreadable, truncated, or not a MEGNet model.
    """
    import h5py  # deferred: h5py is only needed to read a checkpoint, not to import the package

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        f = h5py.File(path, "r")
    except Exception as exc:
        raise _fail(path, f"not a readable HDF5 file ({type(exc).__name__}: {exc})") from exc
    try:
        with f:
            if "model_config" not in f.attrs:
                raise _fail(path, "not a Keras model file (no 'model_config' attribute); is it a MEGNet checkpoint?")
            try:
                config = json.loads(_decode(f.attrs["model_config"]))
            except (ValueError, TypeError) as exc:
                raise _fail(path, f"its 'model_config' is not valid JSON ({exc})") from exc
            arch = parse_model_config(config, path)
            arch.keras_version = _decode(f.attrs.get("keras_version", ""))
            group = f["model_weights"] if "model_weights" in f else f
            weights: dict[str, dict[str, np.ndarray]] = {}
            for name in _weighted_layers(arch):
                if name not in group:
                    raise _fail(path, f"no weights for layer {name!r} (truncated or incomplete file?)")
                g = group[name]
                names = [_decode(n) for n in g.attrs.get("weight_names", [])]
                arrays: dict[str, np.ndarray] = {}
                for wn in names:
                    base = wn.split("/")[-1].split(":")[0]
                    arrays[base] = np.asarray(g[wn][()])
                weights[name] = arrays
            return arch, weights
    except CheckpointError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/RuntimeError on damaged files
        raise _fail(path, f"damaged or truncated HDF5 file ({type(exc).__name__}: {exc})") from exc


def _weighted_layers(arch: MEGNetArchitecture) -> list[str]:
    names = [arch.embedding_source]
    for chain in arch.preblock.values():
        names += [d.source for d in chain]
    for b in arch.blocks:
        for chain in b.ff.values():
            names += [d.source for d in chain]
        names.append(b.source)
    names += [s.source for s in arch.set2set.values()]
    names += [d.source for d in arch.readout]
    return names


Source = tuple[str, int]  # (layer name, output index) of a tensor in a Keras 2 config


class _ConfigGraph:
    """A Keras 2 functional ``model_config``'s layers, with queries that follow their connections."""

    def __init__(self, config: Any, path: str | os.PathLike):
        self.path = path
        if not isinstance(config, dict) or config.get("class_name") not in ("Model", "Functional"):
            raise _fail(path, "model_config is not a Keras functional model")
        self.config = config.get("config", {})
        self.layers: dict[str, dict] = {}
        for entry in self.config.get("layers", []):
            cls = entry.get("class_name")
            name = entry.get("name") or entry.get("config", {}).get("name")
            if cls not in ALLOWED_LAYER_CLASSES:
                raise _fail(path, f"layer {name!r} has class {cls!r}, which a MEGNet model does not contain")
            self.layers[name] = entry
        if not any(e["class_name"] == "MEGNetLayer" for e in self.layers.values()):
            raise _fail(path, "not a MEGNet checkpoint: the model has no MEGNetLayer")

    def inbound(self, name: str) -> list[Source]:
        """The tensors layer ``name`` reads (it must be called exactly once)."""
        nodes = self.layers[name].get("inbound_nodes", [])
        if len(nodes) != 1:
            raise _fail(self.path, f"layer {name!r} is called {len(nodes)} times; expected once")
        node = nodes[0]
        if isinstance(node, dict):
            raise _fail(self.path, "model_config uses the Keras 3 node format; expected a Keras 2 megnet file")
        return [(str(t[0]), int(t[2])) for t in node]

    def cls_of(self, name: str) -> str:
        return self.layers[name]["class_name"]

    def lcfg(self, name: str) -> dict:
        return self.layers[name].get("config", {})

    def trace(self, src: Source) -> Source:
        """Skip Dropout layers (identity at inference)."""
        while self.cls_of(src[0]) == "Dropout":
            src = self.inbound(src[0])[0]
        return src

    def dense_chain(self, src: Source) -> tuple[list[DenseSpec], Source]:
        """The Dense layers ending at ``src``, in call order, and the tensor they start from."""
        chain: list[DenseSpec] = []
        src = self.trace(src)
        while self.cls_of(src[0]) == "Dense":
            c = self.lcfg(src[0])
            chain.insert(0, DenseSpec(src[0], int(c["units"]), c.get("activation")))
            src = self.trace(self.inbound(src[0])[0])
        return chain, src

    def input_width(self, name: str) -> int:
        """The last dimension of input layer ``name`` (0 if unknown)."""
        c = self.lcfg(name)
        shape = list(c.get("batch_input_shape") or c.get("batch_shape") or [])
        return int(shape[-1] or 0)

    def topological_order(self) -> list[str]:
        """Layer names, every layer after the layers it reads (the config's list order is not relied upon)."""
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise _fail(self.path, f"the model graph has a cycle at {name!r}")
            state[name] = 1
            if self.cls_of(name) != "InputLayer":
                for src, _ in self.inbound(name):
                    if src not in self.layers:
                        raise _fail(self.path, f"layer {name!r} reads from unknown layer {src!r}")
                    visit(src)
            state[name] = 2
            order.append(name)

        for name in self.layers:
            visit(name)
        return order

    def consumers(self) -> dict[Source, list[str]]:
        """For each tensor (Dropouts skipped), the layers that read it."""
        out: dict[Source, list[str]] = {}
        for n in self.layers:
            if self.cls_of(n) == "InputLayer":
                continue
            for src in self.inbound(n):
                out.setdefault(self.trace(src), []).append(n)
        return out


@dataclass
class _BlockWalk:
    """What walking the graph blocks finds: the pre-block stacks, the blocks, the streams and the inputs' sizes."""

    preblock: dict[str, list[DenseSpec]] = field(default_factory=dict)
    blocks: list[BlockSpec] = field(default_factory=list)
    streams: dict[str, Source] = field(default_factory=dict)
    embedding_source: str = ""
    n_vocab: int = 0
    embedding_dim: int = 0
    n_bond: int = 0
    n_state: int = 0


def _read_branch_origin(g: _ConfigGraph, walk: _BlockWalk, branch: str, origin: Source) -> None:
    """Check where the first block's ``branch`` starts (embedding or input) and record its size."""
    oc = g.cls_of(origin[0])
    if branch == "atom":
        if oc != "Embedding":
            raise _fail(g.path, f"the atom branch starts at a {oc}; only atomic-number embeddings are supported")
        ec = g.lcfg(origin[0])
        walk.embedding_source = origin[0]
        walk.n_vocab, walk.embedding_dim = int(ec["input_dim"]), int(ec["output_dim"])
    elif branch == "bond":
        if oc != "InputLayer":
            raise _fail(g.path, f"the bond branch starts at a {oc}; expected Gaussian-expanded distances")
        walk.n_bond = g.input_width(origin[0])
    else:
        if oc != "InputLayer":
            raise _fail(g.path, f"the state branch starts at a {oc}; expected a state input")
        walk.n_state = g.input_width(origin[0])


def _residual_add(g: _ConfigGraph, consumers: dict[Source, list[str]], meg: str, j: int, branch: str,
                  stream_in: Source) -> str:
    """The Add layer that adds block ``meg``'s output ``j`` to its input stream."""
    adds = [c for c in consumers.get((meg, j), []) if g.cls_of(c) == "Add"]
    if len(adds) != 1:
        raise _fail(g.path, f"block {meg!r}: expected one residual Add on its {branch} output, found {len(adds)}")
    add = adds[0]
    add_in = [g.trace(s) for s in g.inbound(add)]
    if sorted(add_in) != sorted([stream_in, (meg, j)]):
        raise _fail(g.path, f"residual {add!r} does not add block {meg!r}'s input and output")
    return add


def _read_block(g: _ConfigGraph, walk: _BlockWalk, consumers: dict[Source, list[str]], k: int, meg: str) -> None:
    """Read graph block ``meg`` (the ``k``-th): its Dense pre-layers, widths and residual adds."""
    inb = g.inbound(meg)
    ff: dict[str, list[DenseSpec]] = {}
    residual_sources: dict[str, str] = {}
    for j, branch in enumerate(BRANCHES):
        chain, origin = g.dense_chain(inb[j])
        if k == 0:
            walk.preblock[branch] = chain
            ff[branch] = []
            stream_in = g.trace(inb[j])
            _read_branch_origin(g, walk, branch, origin)
        else:
            ff[branch] = chain
            stream_in = walk.streams[branch]
            if origin != stream_in:
                raise _fail(g.path, f"block {meg!r}: the {branch} branch does not start from the previous block")
        add = _residual_add(g, consumers, meg, j, branch, stream_in)
        walk.streams[branch] = (add, 0)
        residual_sources[branch] = add
    c = g.lcfg(meg)
    walk.blocks.append(
        BlockSpec(
            source=meg,
            ff=ff,
            units_v=[int(x) for x in c["units_v"]],
            units_e=[int(x) for x in c["units_e"]],
            units_u=[int(x) for x in c["units_u"]],
            activation=c.get("activation"),
            pool_method=c.get("pool_method", "mean"),
            residual_sources=residual_sources,
        )
    )


def _walk_blocks(g: _ConfigGraph) -> _BlockWalk:
    """Every MEGNetLayer in graph order, checked to share the index inputs and to chain by residual adds."""
    walk = _BlockWalk()
    meg_names = [n for n in g.topological_order() if g.cls_of(n) == "MEGNetLayer"]  # checks the graph first
    consumers = g.consumers()
    index_inputs: list[Source] | None = None
    for k, meg in enumerate(meg_names):
        inb = g.inbound(meg)
        if len(inb) != 7:
            raise _fail(g.path, f"MEGNetLayer {meg!r} has {len(inb)} inputs; expected 7")
        if index_inputs is None:
            index_inputs = inb[3:]
        elif inb[3:] != index_inputs:
            raise _fail(g.path, f"MEGNetLayer {meg!r} uses different index inputs from the first block")
        _read_block(g, walk, consumers, k, meg)
    return walk


def _read_readout(g: _ConfigGraph, streams: dict[str, Source]):
    """The output Dense stack, its Concatenate, the Set2Set readouts by branch and the concatenation order."""
    outputs = g.config.get("output_layers", [])
    if len(outputs) != 1:
        raise _fail(g.path, f"the model has {len(outputs)} outputs; expected 1")
    readout, concat = g.dense_chain((str(outputs[0][0]), int(outputs[0][2])))
    if g.cls_of(concat[0]) != "Concatenate" or not readout:
        raise _fail(g.path, "the output is not a Dense stack on a Concatenate readout")
    set2set: dict[str, Set2SetSpec] = {}
    concat_order: list[str] = []
    for src in (g.trace(s) for s in g.inbound(concat[0])):
        if g.cls_of(src[0]) == "Set2Set":
            feat = g.trace(g.inbound(src[0])[0])
            branch = next((b for b in ("atom", "bond") if streams[b] == feat), None)
            if branch is None or branch in set2set:
                raise _fail(g.path, f"Set2Set {src[0]!r} does not read the final atom or bond features")
            sc = g.lcfg(src[0])
            set2set[branch] = Set2SetSpec(
                src[0],
                int(sc["T"]),
                int(sc["n_hidden"]),
                sc.get("activation_lstm", "tanh"),
                sc.get("recurrent_activation", "hard_sigmoid"),
            )
            concat_order.append(branch)
        elif src == streams["state"]:
            concat_order.append("state")
        else:
            raise _fail(g.path, f"the readout concatenates {src[0]!r}, which is not a Set2Set or the final state")
    if sorted(concat_order) != ["atom", "bond", "state"]:
        raise _fail(g.path, f"the readout concatenates {concat_order}; expected atom and bond Set2Set and the state")
    return readout, concat[0], set2set, concat_order


def parse_model_config(config: dict, path: str | os.PathLike = "<config>") -> MEGNetArchitecture:
    """Turn a Keras 2 functional ``model_config`` of a megnet model into a :class:`MEGNetArchitecture`.

    The graph is followed by connections; layer names only serve as keys.
    """
    g = _ConfigGraph(config, path)
    walk = _walk_blocks(g)
    readout, concat_source, set2set, concat_order = _read_readout(g, walk.streams)
    naming = "megnet>=1.2" if any(b.source.startswith("megnet_") for b in walk.blocks) else "keras-2.2.4"
    return MEGNetArchitecture(
        n_vocab=walk.n_vocab,
        embedding_dim=walk.embedding_dim,
        embedding_source=walk.embedding_source,
        n_bond_features=walk.n_bond,
        n_state_features=walk.n_state,
        preblock=walk.preblock,
        blocks=walk.blocks,
        set2set=set2set,
        concat_order=concat_order,
        readout=readout,
        concat_source=concat_source,
        naming=naming,
    )


# ----------------------------------------------------------------------------- JSON


def _check_class(d: Any, key: str, path: str | os.PathLike) -> str:
    if not isinstance(d, dict):
        raise _fail(path, f"'{key}' is not an object")
    cls = d.get("@class")
    if cls not in ALLOWED_JSON_CLASSES[key]:
        raise _fail(path, f"'{key}' names class {cls!r}; allowed: {sorted(ALLOWED_JSON_CLASSES[key])}")
    module = d.get("@module", "")
    if key == "centers":
        if module != "numpy":
            raise _fail(path, f"'centers' has module {module!r}; expected numpy")
    elif module and not str(module).startswith("megnet."):
        raise _fail(path, f"'{key}' has module {module!r}; expected a megnet module")
    return cls


def _float(x: Any, what: str, path: str | os.PathLike) -> float:
    """``x`` as a float, refused (naming ``what``) unless it is a finite JSON number."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise _fail(path, f"{what} must be a finite number, got {x!r}"[:300])
    try:
        value = float(x)
    except OverflowError:  # an integer literal beyond float range
        value = math.inf
    if not math.isfinite(value):
        raise _fail(path, f"{what} must be a finite number, got {value}")
    return value


def _graph_cutoff(gc: dict, path: str | os.PathLike) -> float:
    """The graph cutoff of a graph converter: its ``cutoff``, else its ``nn_strategy``'s (an object or a number).

    Every candidate is checked to be a finite number before it is compared or used.
    """
    cutoff = gc.get("cutoff")
    if cutoff is not None:
        cutoff = _float(cutoff, "graph_converter.cutoff", path)
    nn = gc.get("nn_strategy")
    if nn is not None and not isinstance(nn, (int, float)):
        _check_class(nn, "nn_strategy", path)
        nn_cutoff = nn.get("cutoff")
        if nn_cutoff is not None:
            nn_cutoff = _float(nn_cutoff, "graph_converter.nn_strategy.cutoff", path)
            if cutoff is not None and nn_cutoff != cutoff:
                raise _fail(path, f"the graph converter's cutoff {cutoff} and its nn_strategy's cutoff {nn_cutoff} "
                                  "differ")
        cutoff = nn_cutoff if cutoff is None else cutoff
    elif nn is not None and cutoff is None:
        cutoff = _float(nn, "graph_converter.nn_strategy", path)
    if cutoff is None:
        raise _fail(path, "the graph converter has no cutoff (neither 'cutoff' nor 'nn_strategy.cutoff')")
    if cutoff <= 0:
        raise _fail(path, f"the graph cutoff must be positive, got {cutoff}")
    return cutoff


def parse_converter_json(
    data: Any, path: str | os.PathLike = "<json>"
) -> tuple[GraphConverterConfig, ScalerConfig, dict]:
    """Parse the content of a megnet ``.hdf5.json`` with an allow-list.

    Accepted: ``graph_converter`` (``CrystalGraph`` / ``StructureGraphFixedRadius`` with
    ``cutoff``, a ``DummyConverter`` atom converter, a ``GaussianDistance`` bond
    converter with ``centers`` and ``width``, an optional ``MinimumDistanceNNAll``
    strategy), ``target_scaler`` (``StandardScaler`` with ``mean``, ``std``,
    ``is_intensive``, or ``DummyScaler``; absent means ``DummyScaler``, as in megnet),
    and ``metadata`` (kept as plain data).
    """
    if not isinstance(data, dict):
        raise _fail(path, "the model JSON is not an object")
    gc = data.get("graph_converter")
    if gc is None:
        raise _fail(path, "the model JSON has no 'graph_converter'")
    _check_class(gc, "graph_converter", path)
    if "atom_converter" in gc and gc["atom_converter"] is not None:
        _check_class(gc["atom_converter"], "atom_converter", path)
    bc = gc.get("bond_converter")
    if bc is None:
        raise _fail(path, "the graph converter has no 'bond_converter'")
    _check_class(bc, "bond_converter", path)
    centers_raw = bc.get("centers")
    if isinstance(centers_raw, dict):
        _check_class(centers_raw, "centers", path)
        centers_raw = centers_raw.get("data")
    if not isinstance(centers_raw, list) or not centers_raw:
        raise _fail(path, "the Gaussian 'centers' are missing or empty")
    centers = [_float(c, "a Gaussian centre", path) for c in centers_raw]
    width = _float(bc.get("width"), "the Gaussian width", path)
    if width <= 0:
        raise _fail(path, f"the Gaussian width must be positive, got {width}")
    cutoff = _graph_cutoff(gc, path)
    scaler = ScalerConfig()
    ts = data.get("target_scaler")
    if ts is not None:
        kind = _check_class(ts, "target_scaler", path)
        if kind == "StandardScaler":
            is_int = ts.get("is_intensive", True)
            if not isinstance(is_int, bool):
                raise _fail(path, f"target_scaler.is_intensive must be true or false, got {is_int!r}")
            std = _float(ts.get("std", 1.0), "target_scaler.std", path)
            if std <= 0:
                raise _fail(path, f"target_scaler.std must be positive, got {std}")
            scaler = ScalerConfig("StandardScaler", _float(ts.get("mean", 0.0), "target_scaler.mean", path), std,
                                  is_int)
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        metadata = {"value": metadata}
    return GraphConverterConfig(cutoff, centers, width), scaler, metadata


def read_converter_json(path: str | os.PathLike) -> tuple[GraphConverterConfig, ScalerConfig, dict]:
    """Read and parse a megnet ``.hdf5.json`` (see :func:`parse_converter_json`)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "missing: a megnet checkpoint needs its .hdf5.json (graph converter and target scaler)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid JSON ({exc})") from exc
    return parse_converter_json(data, path)


def read_checkpoint(hdf5_path: str | os.PathLike, json_path: str | os.PathLike | None = None) -> MEGNetCheckpoint:
    """Read a megnet checkpoint: the ``.hdf5`` and its ``.hdf5.json`` (default: beside it).

    Raises:
        CheckpointError: on any problem with either file.
    """
    hdf5_path = Path(hdf5_path)
    json_path = Path(json_path) if json_path is not None else Path(str(hdf5_path) + ".json")
    arch, weights = read_hdf5(hdf5_path)
    converter, scaler, metadata = read_converter_json(json_path)
    if arch.n_bond_features and arch.n_bond_features != len(converter.centers):
        raise _fail(
            json_path,
            f"{len(converter.centers)} Gaussian centres, but the model expects {arch.n_bond_features} bond features",
        )
    return MEGNetCheckpoint(str(hdf5_path), arch, weights, converter, scaler, metadata)
