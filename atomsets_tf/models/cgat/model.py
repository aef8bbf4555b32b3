"""The CGAT model (crystal graph attention network, Schmidt et al. 2021) in Keras 3.

Port of ``CGAtNet`` of hyllios/CGAT at the training script's defaults (golden README):
``elem_fea_len=128, n_graph=5, msg_heads=5, n_graph_roost=3, nbr_embedding_size=128,
neighbor_number=24``, vector attention everywhere, edges updated, ReZero head, global-pool heads
concatenated. Documented quirks of the original, reproduced where they change numbers:

1. ``--nbr-embedding-size`` is ignored by the original's training script: edges are always 128 wide.
2. Inverted CLI flags: ``mean_pooling`` defaults to False here (heads concatenated), as the
   original's default path builds it.
3. ``log_std`` (output column 1) is produced but not trained by the default L1 loss
   (:func:`cgat_l1_loss` uses column 0 only).
4. The edge layers compute an attention and discard it; it is **not** computed here (same numbers,
   about half the original's time); its checkpoint weights are ignored. Edge features are then a
   function of the rank alone and are held as a ``[25, 128]`` table. The last step's edge update
   never reaches the output: that layer is frozen (``trainable=False``) and only evaluated for taps.
5. Messages are aggregated at the neighbour (``edge_index[1]``), see
   :class:`~atomsets_tf.models.cgat.attention.NodeAttentionUpdate`.
6. Hypernetwork update ``H_Net_0`` / ``H_Net`` with the clamped damping, see
   :class:`~atomsets_tf.models.cgat.hypernet.HyperNetworkUpdate`.
7. ReZero alphas start at 0 (linear head at init).
11. The original crashes when the last crystal of a batch is elemental; fixed here (tested).

Inputs: the padded layout of :mod:`atomsets_tf.models.cgat.data` (a dict with ``atom_z``, ``atom_mask``,
``nbr_idx``, ``nbr_rank``, ``elem_z``, ``elem_weights``); the model looks the element vectors up by atomic
number in its element embedding (:meth:`CGAT.element_z_table`). It also takes the vectors themselves,
``atom_fea`` and ``elem_fea`` in place of ``atom_z`` and ``elem_z`` (the original code's inputs), with
bit-identical results for the same vectors. Output ``[B, 2]``: normalised value and log-std. The target
normalisation (mean, std) is stored in the model. A classifier (``task_type="classification"``, as
:func:`~atomsets_tf.workflows.retrain.retrain` makes one from a regression parent) has a one-wide output layer
and a sigmoid: output ``[B, 1]``, the probability of class 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from atomsets_tf import presets
from atomsets_tf.errors import CheckpointError, UnknownTapError
from atomsets_tf.models.cgat._common import (  # noqa: F401 - IGNORED_TORCH_KEYS: re-exported (tests, older imports)
    IGNORED_TORCH_KEYS,
    Tensor,
    TorchWeight,
    config_from_state_dict,
    load_state_dict,
    t_identity,
    t_linear,
    torch_uniform,
)
from atomsets_tf.models.cgat.attention import EdgeUpdate, NodeAttentionUpdate
from atomsets_tf.models.cgat.checkpoint import read_checkpoint
from atomsets_tf.models.cgat.data import CGATGraph, collate, structures_to_graphs
from atomsets_tf.models.cgat.elements import ElementEmbedding, atomic_number_rows, load_matscholar_embedding
from atomsets_tf.models.cgat.pooling import CrystalAttentionPool, RezeroResidualHead
from atomsets_tf.models.cgat.roost import RoostEncoder
from atomsets_tf.utils.progress import progress_bar

#: What a CGAT predicts: ``regression`` (value and log-std) or ``classification`` (a probability).
TASK_TYPES = ("regression", "classification")


@keras.saving.register_keras_serializable(package="atomsets_tf")
def cgat_l1_loss(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """CGAT's default loss (``std_loss=True``): L1 between column 0 of the output and the normalised target."""
    y_true = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype), (-1,))
    return keras.ops.mean(keras.ops.abs(y_pred[:, 0] - y_true))


@keras.saving.register_keras_serializable(package="atomsets_tf")
class CGAT(keras.Model):
    """Crystal graph attention network.

    Args:
        orig_elem_fea_len: width of the input element embedding (matscholar: 200).
        elem_fea_len: node feature width F.
        n_graph: message-passing steps.
        nbr_embedding_size: edge feature width (128; see quirk 1).
        neighbor_number: neighbours per atom (ranks 1..neighbor_number; the rank table has +1 rows).
        msg_heads: attention heads of the node layers and the global pool.
        n_graph_roost: ROOST message layers.
        mean_pooling: average the global-pool heads instead of concatenating them.
        rezero: ReZero factors in the residual head.
        vector_attention: per-channel attention in the node layers.
        global_vector_attention: per-channel attention in the global pool.
        out_hidden: widths of the residual head's blocks.
        target_mean, target_std: target normalisation (stored as non-trainable weights).
        elements: symbols of a stored element-embedding table (for :meth:`predict_structures`);
            ``None`` = load the matscholar embedding from its default location when needed.
        radius: neighbour cutoff in Å used by :meth:`predict_structures` / :meth:`tap`.
        static_shapes: compute every padded atom slot (masked) instead of gathering the real atoms
            first. Same results; shapes are static, as XLA (``jit_compile``) needs, but padding costs
            compute. Default False.
        task_type: ``"regression"`` (the paper's value and log-std) or ``"classification"`` (a one-wide
            output layer and a sigmoid: the probability of class 1; the target normalisation is not used).
        **kwargs: passed to :class:`keras.Model` (e.g. ``name``).

    Call arguments:
        inputs: a padded batch, as :func:`~atomsets_tf.models.cgat.data.collate` makes it: a dict with
            ``atom_z`` (atomic number of each atom, 0 = padding), ``atom_mask`` (1 = real atom),
            ``nbr_idx`` (index of each atom's neighbours in its crystal), ``nbr_rank`` (their
            distance-shell rank, 1..neighbor_number), ``elem_z`` (atomic number of each distinct
            element, 0 = padding) and ``elem_weights`` (its fractional abundance, 0 = padding). The
            element vectors are looked up in :meth:`element_z_table`. Or, in place of ``atom_z`` and
            ``elem_z``, the vectors themselves: ``atom_fea`` and ``elem_fea``.
        training: unused (no dropout or batch norm).

    Input shape:
        ``atom_z``, ``atom_mask``: ``(B, N)``; ``nbr_idx``, ``nbr_rank``: ``(B, N, K)``; ``elem_z``,
        ``elem_weights``: ``(B, E)``. Or ``atom_fea``: ``(B, N, orig_elem_fea_len)`` and ``elem_fea``:
        ``(B, E, orig_elem_fea_len)``.

    Output shape:
        ``(B, 2)``: normalised value and log-std (see :meth:`denormalise`); a classifier: ``(B, 1)``,
        the probability of class 1.

    Example:

    >>> import numpy as np
    >>> model = CGAT(orig_elem_fea_len=6, elem_fea_len=4, n_graph=1, nbr_embedding_size=3,
    ...              neighbor_number=2, msg_heads=1, n_graph_roost=1, out_hidden=[8], elements=["Na", "Cl"])
    >>> model.set_element_embedding(ElementEmbedding(["Na", "Cl"], np.arange(12).reshape(2, 6)))
    >>> batch = {  # NaCl2 (3 atoms) and Na2 (2 atoms; padded to 3)
    ...     "atom_z": np.array([[11, 17, 17], [11, 11, 0]], "int32"),
    ...     "atom_mask": np.array([[1, 1, 1], [1, 1, 0]], "float32"),
    ...     "nbr_idx": np.array([[[1, 2], [0, 2], [0, 1]], [[1, 1], [0, 0], [0, 0]]], "int32"),
    ...     "nbr_rank": np.array([[[1, 2], [1, 2], [1, 2]], [[1, 2], [1, 2], [0, 0]]], "int32"),
    ...     "elem_z": np.array([[11, 17], [11, 0]], "int32"),
    ...     "elem_weights": np.array([[1 / 3, 2 / 3], [1.0, 0.0]], "float32"),
    ... }
    >>> tuple(model(batch).shape)
    (2, 2)
    >>> tuple(model.compute_taps(batch, ["node_fea_1"])["node_fea_1"].shape)
    (2, 3, 4)
    >>> table = np.asarray(model.element_z_table())  # the vectors themselves give the same numbers
    >>> features = {**batch, "atom_fea": table[batch["atom_z"]], "elem_fea": table[batch["elem_z"]]}
    >>> del features["atom_z"], features["elem_z"]
    >>> bool(np.array_equal(model(features), model(batch)))
    True
    """

    def __init__(
        self,
        orig_elem_fea_len: int = 200,
        elem_fea_len: int = 128,
        n_graph: int = 5,
        nbr_embedding_size: int = 128,
        neighbor_number: int = 24,
        msg_heads: int = 5,
        n_graph_roost: int = 3,
        mean_pooling: bool = False,
        rezero: bool = True,
        vector_attention: bool = True,
        global_vector_attention: bool = True,
        out_hidden: Sequence[int] = (1024, 1024, 512, 512, 256, 256, 128),
        target_mean: float = 0.0,
        target_std: float = 1.0,
        elements: Sequence[str] | None = None,
        radius: float = 18.0,
        static_shapes: bool = False,
        task_type: str = "regression",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
        self.task_type = str(task_type)
        self.orig_elem_fea_len = int(orig_elem_fea_len)
        self.elem_fea_len = int(elem_fea_len)
        self.n_graph = int(n_graph)
        self.nbr_embedding_size = int(nbr_embedding_size)
        self.neighbor_number = int(neighbor_number)
        self.msg_heads = int(msg_heads)
        self.n_graph_roost = int(n_graph_roost)
        self.mean_pooling = bool(mean_pooling)
        self.rezero = bool(rezero)
        self.vector_attention = bool(vector_attention)
        self.global_vector_attention = bool(global_vector_attention)
        self.out_hidden = [int(h) for h in out_hidden]
        self._init_mean = float(target_mean)
        self._init_std = float(target_std)
        self.elements = None if elements is None else [str(s) for s in elements]
        # rows of [zeros, element_table] by atomic number (see element_z_table)
        self._stored_rows = None if self.elements is None else atomic_number_rows(self.elements)
        self.radius = float(radius)
        self.static_shapes = bool(static_shapes)
        f = self.elem_fea_len
        self.node_layers = [
            NodeAttentionUpdate(f, self.nbr_embedding_size, self.msg_heads, first=(k == 0),
                                vector_attention=self.vector_attention, name=f"node_{k}")
            for k in range(self.n_graph)
        ]
        self.edge_layers = [EdgeUpdate(self.nbr_embedding_size, name=f"edge_{k}") for k in range(self.n_graph)]
        self.roost = RoostEncoder(self.orig_elem_fea_len, f, self.n_graph_roost, name="roost")
        self.cry_pool = CrystalAttentionPool(f, self.msg_heads, self.global_vector_attention, name="cry_pool")
        head_in = f if self.mean_pooling else f * self.msg_heads
        outputs = 1 if self.is_classifier else 2  # a probability's logit, or value and log-std
        self.head = RezeroResidualHead(head_in, outputs, self.out_hidden, rezero=self.rezero, name="output_nn")
        self._embedding_cache: ElementEmbedding | None = None
        self.build()

    # ------------------------------------------------------------------ build / config
    def build(self, input_shape: Any = None) -> None:
        if getattr(self, "_cgat_built", False):
            return
        f = self.elem_fea_len
        self.embedding_kernel = self.add_weight(name="embedding_kernel", shape=(self.orig_elem_fea_len, f),
                                                initializer=torch_uniform(self.orig_elem_fea_len))
        self.nbr_embedding = self.add_weight(name="nbr_embedding",
                                             shape=(self.neighbor_number + 1, self.nbr_embedding_size),
                                             initializer=keras.initializers.RandomNormal(stddev=1.0))
        for layer in self.node_layers:
            layer.build(None)
        for layer in self.edge_layers:
            layer.build(None)
        # Quirk 4: the last step's edge update never reaches the output (no gradient in the original).
        self.edge_layers[-1].trainable = False
        self.roost.build(None)
        self.cry_pool.build(None)
        self.head.build(None)
        self.target_mean = self.add_weight(name="target_mean", shape=(), trainable=False,
                                           initializer=keras.initializers.Constant(self._init_mean))
        self.target_std = self.add_weight(name="target_std", shape=(), trainable=False,
                                          initializer=keras.initializers.Constant(self._init_std))
        if self.elements is not None:
            self.element_table = self.add_weight(name="element_table",
                                                 shape=(len(self.elements), self.orig_elem_fea_len),
                                                 trainable=False, initializer="zeros")
        self._cgat_built = True
        self.built = True

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(
            orig_elem_fea_len=self.orig_elem_fea_len,
            elem_fea_len=self.elem_fea_len,
            n_graph=self.n_graph,
            nbr_embedding_size=self.nbr_embedding_size,
            neighbor_number=self.neighbor_number,
            msg_heads=self.msg_heads,
            n_graph_roost=self.n_graph_roost,
            mean_pooling=self.mean_pooling,
            rezero=self.rezero,
            vector_attention=self.vector_attention,
            global_vector_attention=self.global_vector_attention,
            out_hidden=list(self.out_hidden),
            target_mean=float(keras.ops.convert_to_numpy(self.target_mean)),
            target_std=float(keras.ops.convert_to_numpy(self.target_std)),
            elements=None if self.elements is None else list(self.elements),
            radius=self.radius,
            static_shapes=self.static_shapes,
        )
        if self.task_type != "regression":  # left out at its default: a regression CGAT's config is unchanged
            cfg["task_type"] = self.task_type
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CGAT:
        return cls(**config)

    @property
    def is_classifier(self) -> bool:
        """Whether the model outputs a probability (``task_type="classification"``)."""
        return self.task_type == "classification"

    # ------------------------------------------------------------------ forward
    def tap_names(self) -> list[str]:
        """Names accepted by :meth:`compute_taps` / :meth:`tap`."""
        names = [f"node_fea_{k}" for k in range(self.n_graph + 1)]
        names += [f"node_update_{k}" for k in range(1, self.n_graph + 1)]
        names += [f"edge_fea_table_{k}" for k in range(self.n_graph + 1)]
        names += ["roost_embed_out"] + [f"roost_elem_fea_{k}" for k in range(1, self.n_graph_roost + 1)]
        names += ["roost_crys_fea", "cry_pool_out", "graph_embedding", "head_in"]
        names += [f"head_block_{k}" for k in range(1, len(self.out_hidden) + 1)]
        if self.is_classifier:
            return names + ["out_logit", "out"]
        return names + ["out", "out_value", "out_log_std", "pred_denorm"]

    def _edge_lists(self, atom_mask: Tensor, nbr_idx: Tensor, nbr_rank: Tensor) -> dict[str, Any]:
        """Padded neighbour lists -> the flat edge lists the layers use (see :mod:`~atomsets_tf.models.cgat.attention`).

        Returns a dict with ``real`` (flat padded index of each computed atom), ``crystal_id``,
        ``recv``, ``rank``, and (static shapes only, else ``None``) the aggregation ``segments``
        and ``crystal_segments`` that route padding to a dropped segment.
        """
        b, n, k = keras.ops.shape(nbr_idx)[0], keras.ops.shape(nbr_idx)[1], keras.ops.shape(nbr_idx)[2]
        flat_mask = keras.ops.reshape(atom_mask, (-1,)) > 0
        if not self.static_shapes:
            # Padded layout -> compact list of the real atoms of the batch (exact; padding costs nothing).
            real = keras.ops.nonzero(flat_mask)[0]  # [R] flat padded index of each real atom (int32)
            pos = keras.ops.cumsum(keras.ops.cast(flat_mask, "int32")) - 1  # flat padded index -> compact index
            crystal_id = real // n
            nbr = keras.ops.take(keras.ops.reshape(nbr_idx, (-1, k)), real, axis=0) + (crystal_id * n)[:, None]
            return {"real": real, "crystal_id": crystal_id,
                    "recv": keras.ops.take(pos, nbr, axis=0),  # [R, K] compact index of each neighbour
                    "rank": keras.ops.take(keras.ops.reshape(nbr_rank, (-1, k)), real, axis=0),
                    "segments": None, "crystal_segments": None}
        # Every padded slot is computed (static shapes, for XLA); edges of padding atoms and the
        # padding atoms themselves are routed to a dropped segment.
        total = b * n
        real = keras.ops.arange(total, dtype="int32")
        crystal_id = real // n
        recv = keras.ops.reshape(keras.ops.clip(nbr_idx, 0, n - 1), (-1, k)) + (crystal_id * n)[:, None]
        return {"real": real, "crystal_id": crystal_id, "recv": recv,
                "rank": keras.ops.clip(keras.ops.reshape(nbr_rank, (-1, k)), 0, self.neighbor_number),
                "segments": keras.ops.where(flat_mask[:, None], recv, total),
                "crystal_segments": keras.ops.where(flat_mask, crystal_id, b)}

    def _input_features(self, inputs: dict[str, Tensor], real: Tensor) -> tuple[Tensor, Tensor]:
        """The element vectors of the computed atoms ``[R, d]`` (``real``: their flat padded indices) and of
        the elements ``[B, E, d]``: looked up in :meth:`element_z_table` by ``atom_z`` / ``elem_z``, or
        given as ``atom_fea`` / ``elem_fea``. Both give the same float32 values, hence the same outputs."""
        if "atom_z" in inputs:
            table = self.element_z_table()
            flat_z = keras.ops.reshape(keras.ops.cast(inputs["atom_z"], "int32"), (-1,))
            atom_z = flat_z if self.static_shapes else keras.ops.take(flat_z, real, axis=0)
            elem_z = keras.ops.cast(inputs["elem_z"], "int32")
            return keras.ops.take(table, atom_z, axis=0), keras.ops.take(table, elem_z, axis=0)
        flat_x = keras.ops.reshape(keras.ops.convert_to_tensor(inputs["atom_fea"], "float32"),
                                   (-1, self.orig_elem_fea_len))
        x_in = flat_x if self.static_shapes else keras.ops.take(flat_x, real, axis=0)
        return x_in, keras.ops.convert_to_tensor(inputs["elem_fea"], "float32")

    def _forward(self, inputs: dict[str, Tensor], want_taps: bool) -> dict[str, Tensor]:
        atom_mask = keras.ops.convert_to_tensor(inputs["atom_mask"])
        elem_weights = keras.ops.convert_to_tensor(inputs["elem_weights"], "float32")
        b, n = keras.ops.shape(atom_mask)[0], keras.ops.shape(atom_mask)[1]
        edges = self._edge_lists(atom_mask, keras.ops.cast(inputs["nbr_idx"], "int32"),
                                 keras.ops.cast(inputs["nbr_rank"], "int32"))
        real, crystal_id, recv, rank, segments, crystal_segments = (
            edges[key] for key in ("real", "crystal_id", "recv", "rank", "segments", "crystal_segments"))
        x_in, elem_fea = self._input_features(inputs, real)

        taps: dict[str, Tensor] = {}
        x0 = keras.ops.matmul(x_in, self.embedding_kernel)
        x = x0
        table = keras.ops.convert_to_tensor(self.nbr_embedding)
        if want_taps:
            taps["node_fea_0"] = x
            taps["edge_fea_table_0"] = table
        for step in range(self.n_graph):
            update = self.node_layers[step](x, x0, table, recv, rank, segments)
            if step < self.n_graph - 1 or want_taps:
                table = table + self.edge_layers[step](table)
            x = x + update
            if want_taps:
                taps[f"node_update_{step + 1}"] = update
                taps[f"node_fea_{step + 1}"] = x
                taps[f"edge_fea_table_{step + 1}"] = table

        crys, roost_taps = self.roost(elem_fea, elem_weights, return_taps=True)
        pooled = self.cry_pool(x, crys, crystal_id, n_crystals=b, segments=crystal_segments)
        if want_taps:
            taps["cry_pool_out"] = pooled
        if self.mean_pooling:
            pooled = keras.ops.mean(keras.ops.reshape(pooled, (-1, self.msg_heads, self.elem_fea_len)), axis=1)
        out, blocks = self.head(pooled, return_blocks=True)
        if self.is_classifier:
            taps["out_logit"] = out
            out = keras.ops.sigmoid(out)
        taps["out"] = out
        if want_taps:
            taps.update(roost_taps)
            taps["roost_crys_fea"] = crys
            taps["graph_embedding"] = pooled
            taps["head_in"] = pooled
            for i, blk in enumerate(blocks):
                taps[f"head_block_{i + 1}"] = blk
            if not self.is_classifier:
                taps["out_value"] = out[:, 0:1]
                taps["out_log_std"] = out[:, 1:2]
                taps["pred_denorm"] = out[:, 0:1] * self.target_std + self.target_mean
            # per-atom taps back to the padded layout [B, N, F]
            keep = keras.ops.cast(keras.ops.reshape(atom_mask, (-1,)) > 0, "float32")[:, None]
            for name in list(taps):
                if name.startswith("node_"):
                    if self.static_shapes:
                        flat = taps[name] * keep
                    else:
                        flat = keras.ops.scatter(real[:, None], taps[name], (b * n, self.elem_fea_len))
                    taps[name] = keras.ops.reshape(flat, (b, n, self.elem_fea_len))
            taps["_compact_real"] = real
        return taps

    def call(self, inputs: dict[str, Tensor], training: bool | None = None) -> Tensor:
        """Padded batch -> ``[B, 2]`` (normalised value, log-std); a classifier: ``[B, 1]`` (probability)."""
        return self._forward(inputs, want_taps=False)["out"]

    def compute_taps(self, inputs: dict[str, Tensor], names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Intermediate tensors of a padded batch (per-atom taps ``[B, N, F]``, per-element ``[B, E, F]``).

        Raises:
            UnknownTapError: a name not in :meth:`tap_names`.
        """
        names = list(names) if names is not None else self.tap_names()
        known = set(self.tap_names())
        for name in names:
            if name not in known:
                raise UnknownTapError(f"unknown CGAT tap {name!r}; known taps: {', '.join(self.tap_names())}")
        taps = self._forward(inputs, want_taps=True)
        return {name: taps[name] for name in names}

    def freeze_graph_embedding(self, frozen: bool = True) -> None:
        """"Only regression head" transfer (CGAT's ``--only-residual``): train the output head alone.

        Freezes (or, with ``frozen=False``, unfreezes) the element and rank embeddings, the
        message-passing layers, the ROOST branch and the crystal pooling, i.e. everything that
        produces the ``graph_embedding`` tap. The last step's edge update stays frozen (quirk 4).
        Trainable flags are not stored in ``.keras`` files: call this again after loading.
        """
        for layer in [*self.node_layers, *self.edge_layers[:-1], self.roost, self.cry_pool]:
            layer.trainable = not frozen
        self.embedding_kernel.trainable = not frozen
        self.nbr_embedding.trainable = not frozen

    def copy_weights_below_output(self, parent: CGAT) -> None:
        """Take every weight of ``parent`` (a CGAT of the same configuration, but for its ``task_type``) except
        those of the head's output layer and the target normalisation, which stay as initialised: a new output
        for a new kind of target.

        Raises:
            ValueError: ``parent`` has other weights than this model below the output.
        """
        own_output = {id(v) for v in (self.head.kernel_out, self.head.bias_out, self.target_mean, self.target_std)}
        if len(self.weights) != len(parent.weights):
            raise ValueError(f"{parent.name} has {len(parent.weights)} weights, this CGAT {len(self.weights)}")
        for mine, theirs in zip(self.weights, parent.weights, strict=True):
            if id(mine) in own_output:
                continue
            if mine.path.split("/", 1)[-1] != theirs.path.split("/", 1)[-1] or tuple(mine.shape) != tuple(theirs.shape):
                raise ValueError(f"weight {theirs.path} {tuple(theirs.shape)} does not match {mine.path} "
                                 f"{tuple(mine.shape)}")
            mine.assign(theirs)

    # ------------------------------------------------------------------ normalisation
    def normalise(self, y: Any) -> Tensor:
        """``(y - mean) / std`` with the stored target normalisation."""
        return (keras.ops.cast(y, "float32") - self.target_mean) / self.target_std

    def denormalise(self, y: Any) -> Tensor:
        """``y * std + mean``."""
        return keras.ops.cast(y, "float32") * self.target_std + self.target_mean

    def fit_normalisation(self, targets: Sequence[float] | np.ndarray) -> tuple[float, float]:
        """Set mean and (unbiased, as ``torch.std``) std from training targets; returns them."""
        t = np.asarray(targets, dtype=np.float64).ravel()
        mean, std = float(t.mean()), float(t.std(ddof=1)) if t.size > 1 else 1.0
        self.target_mean.assign(mean)
        self.target_std.assign(std)
        return mean, std

    # ------------------------------------------------------------------ structures
    def set_element_embedding(self, embedding: ElementEmbedding) -> None:
        """Use ``embedding`` for structures and for the atomic-number inputs (:meth:`element_z_table`); it is
        stored in the model's ``element_table`` when the model was built with the same ``elements``."""
        if embedding.dim != self.orig_elem_fea_len:
            raise ValueError(f"embedding width {embedding.dim} != model input width {self.orig_elem_fea_len}")
        self._embedding_cache = embedding
        if self.elements is not None and list(embedding.symbols) == self.elements:
            self.element_table.assign(embedding.table)

    def element_z_table(self) -> Tensor:
        """The element vectors by atomic number, float32 ``(MAX_Z + 1, orig_elem_fea_len)``; row 0 (padding)
        and the elements the embedding lacks are zeros.

        From the stored ``element_table`` when the model has ``elements`` (unless
        :meth:`set_element_embedding` gave it another set of symbols), else from :meth:`element_embedding`.

        Raises:
            ValueError: an embedding of another width than ``orig_elem_fea_len``.
            FileNotFoundError: no stored or given embedding, and no matscholar file.
        """
        given = self._embedding_cache
        if self.elements is not None and (given is None or given.symbols == self.elements):
            zeros = keras.ops.zeros((1, self.orig_elem_fea_len), "float32")
            padded = keras.ops.concatenate([zeros, keras.ops.convert_to_tensor(self.element_table)], axis=0)
            return keras.ops.take(padded, self._stored_rows, axis=0)
        embedding = self.element_embedding()
        if embedding.dim != self.orig_elem_fea_len:
            raise ValueError(f"{embedding.name}: embedding width {embedding.dim} != model input width "
                             f"{self.orig_elem_fea_len}")
        return keras.ops.convert_to_tensor(embedding.z_table())

    def element_embedding(self) -> ElementEmbedding:
        """The element embedding used for structures (stored table, else the default matscholar file)."""
        if self._embedding_cache is None:
            if self.elements is not None:
                self._embedding_cache = ElementEmbedding(
                    self.elements, keras.ops.convert_to_numpy(self.element_table), name="stored")
            else:
                self._embedding_cache = load_matscholar_embedding()
        return self._embedding_cache

    def _graphs(self, structures: Sequence[Any]) -> list[CGATGraph]:
        items = list(structures)
        if all(isinstance(s, CGATGraph) for s in items):
            return items
        return structures_to_graphs(items, self.element_embedding(), self.radius, self.neighbor_number)

    def predict_structures(self, structures: Sequence[Any], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Denormalised predictions ``[n]`` for pymatgen structures (or :class:`CGATGraph`); a classifier's
        probabilities of class 1. ``progress``: a bar over the structures on stderr (on a terminal)."""
        graphs = self._graphs(structures)
        out = np.zeros(len(graphs), dtype=np.float32)
        with progress_bar(len(graphs), "CGAT", "structure", progress) as bar:
            for start in range(0, len(graphs), batch_size):
                batch = collate(graphs[start : start + batch_size])
                value = self(batch)[:, 0]
                if not self.is_classifier:
                    value = self.denormalise(value)
                out[start : start + len(value)] = keras.ops.convert_to_numpy(value)
                bar.update(len(value))
        return out

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """Keras ``predict`` for batches; for a list of structures, :meth:`predict_structures`."""
        from pymatgen.core import IStructure  # pymatgen is slow to import: only when predict() is called

        if isinstance(x, (list, tuple)) and x and all(isinstance(s, (IStructure, CGATGraph)) for s in x):
            return self.predict_structures(x, batch_size=kwargs.get("batch_size") or 32)
        return super().predict(x, *args, **kwargs)

    def tap(self, structures: Sequence[Any], names: Sequence[str], batch_size: int = 32) -> dict[str, Any]:
        """Intermediate features of structures.

        Returns a dict name -> value: per-atom taps (``node_*``) and per-element taps (``roost_elem_*``,
        ``roost_embed_out``) as a list of unpadded ``[n_i, F]`` arrays, one per structure; per-crystal
        taps as ``[n, d]`` arrays; edge tables (``edge_fea_table_k``) as one ``[25, 128]`` array.
        """
        graphs = self._graphs(structures)
        names = list(names)
        result: dict[str, Any] = {}
        for start in range(0, len(graphs), batch_size):
            chunk = graphs[start : start + batch_size]
            taps = self.compute_taps(collate(chunk), names)
            for name in names:
                v = keras.ops.convert_to_numpy(taps[name])
                if name.startswith("edge_fea_table"):
                    result[name] = v
                elif name.startswith("node_"):
                    result.setdefault(name, []).extend(v[i, : g.n_atoms] for i, g in enumerate(chunk))
                elif name.startswith("roost_elem") or name == "roost_embed_out":
                    result.setdefault(name, []).extend(v[i, : len(g.elem_weights)] for i, g in enumerate(chunk))
                else:
                    result.setdefault(name, []).append(v)
        for name in names:
            if isinstance(result.get(name), list) and not (
                name.startswith("node_") or name.startswith("roost_elem") or name == "roost_embed_out"
            ):
                result[name] = np.concatenate(result[name], axis=0)
        return result

    # ------------------------------------------------------------------ torch weights
    def torch_weights(self) -> list[TorchWeight]:
        """Every Keras variable with its PyTorch ``CGAtNet`` state_dict key (without ``model.``)."""
        out = [TorchWeight("embedding.weight", self.embedding_kernel, t_linear),
               TorchWeight("nbr_embedding.weight", self.nbr_embedding, t_identity)]
        for k in range(self.n_graph):
            out += self.node_layers[k].torch_weights(f"graphs.{k}.Node.")
            out += self.edge_layers[k].torch_weights(f"graphs.{k}.Edge.")
        out += self.roost.torch_weights("roost.")
        out += self.cry_pool.torch_weights("cry_pool.")
        out += self.head.torch_weights("output_nn.")
        return out

    def load_torch_state_dict(self, state_dict: dict[str, np.ndarray], strict: bool = True) -> None:
        """Assign a (numpy) ``CGAtNet`` state_dict. See :func:`atomsets_tf.models.cgat._common.load_state_dict`."""
        load_state_dict(self, state_dict, strict=strict)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, np.ndarray], hparams: dict[str, Any] | None = None,
                        **overrides: Any) -> CGAT:
        """Build a model whose configuration is inferred from a ``CGAtNet`` state_dict and load it.

        ``hparams`` (optional): the checkpoint's hyper-parameters, cross-checked against the weights;
        ``overrides``: constructor arguments that replace the inferred ones.
        """
        cfg = config_from_state_dict(state_dict, hparams)
        cfg.update(overrides)
        model = cls(**cfg)
        load_state_dict(model, state_dict)
        return model

    @classmethod
    def from_checkpoint(cls, path: str, embedding: ElementEmbedding | None = None) -> CGAT:
        """Load a PyTorch Lightning CGAT checkpoint (``.ckpt``; needs torch, loaded with ``weights_only=True``).

        With ``embedding`` (an :class:`~atomsets_tf.models.cgat.elements.ElementEmbedding`), its table is stored in
        the model so that a saved ``.keras`` file is self-contained for structures.
        """
        state, hparams = read_checkpoint(path)
        overrides = {} if embedding is None else {"elements": list(embedding.symbols)}
        model = cls.from_state_dict(state, hparams, **overrides)
        if embedding is not None:
            model.set_element_embedding(embedding)
        return model

    @classmethod
    def from_preset(cls, name: str, download: bool = True) -> CGAT:
        """Load a trained CGAT preset (see ``atomsets-tf models``; its model card is in ``pretrained/``).

        Raises:
            UnknownPresetError: an unknown name, or a preset that is not a CGAT.
        """
        return load_cgat(presets.preset_file(name, "cgat", download))


def load_cgat(path: str | os.PathLike) -> CGAT:
    """Load a CGAT model from a ``.keras`` file (``safe_mode=True``) or a Lightning ``.ckpt`` (needs torch).

    For a ``.ckpt``, the matscholar embedding is stored in the model when its default location is found.

    Raises:
        CheckpointError: a ``.ckpt`` that is not a loadable CGAT checkpoint, or a ``.keras`` file
            that is missing, corrupt (e.g. broken weights), refused by safe mode, or does not hold a
            :class:`CGAT`; the message names the file.
    """
    path = Path(path)
    if path.suffix == ".ckpt":
        try:
            embedding = load_matscholar_embedding()
        except FileNotFoundError:
            embedding = None
        return CGAT.from_checkpoint(str(path), embedding=embedding)
    if not path.is_file():
        raise CheckpointError(f"no such model file: {path}")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # zip, JSON, h5, safe-mode and deserialisation errors all mean "not a usable CGAT"
        why = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise CheckpointError(f"{path}: cannot load as a .keras CGAT model ({why})") from None
    if not isinstance(model, CGAT):
        raise CheckpointError(f"{path} holds a {type(model).__name__}, not a CGAT model")
    return model
