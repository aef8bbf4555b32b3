"""Training under ``tf.distribute.MultiWorkerMirroredStrategy`` (several processes or hosts).

Keras 3's ``Model.fit`` does not work with a multi-worker strategy when the
inputs are a dict and the step logs are scalars (Keras 3.15, TF 2.21):

* before the first step, ``fit`` peeks one distributed batch and calls
  ``strategy.reduce("MEAN", batch, axis=None)`` on the whole structure, which
  the collective strategy rejects for a dict of ``PerReplica`` values
  (keras-team/keras#20329);
* after every step it reduces the logs with ``strategy.reduce("MEAN", v,
  axis=0)``, which fails on a scalar such as the loss ("Invalid reduction
  dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388).

:func:`fit_multi_worker` is a drop-in for ``model.fit`` on such a strategy: a
small training loop that runs the model's own ``train_step`` (same loss
scaling, gradient all-reduce and optimizer as ``fit``) with ``strategy.run``,
reduces the logs with ``axis=None``, and calls the usual Keras callbacks.

Every worker runs the same callbacks; only the chief should write where the
user asked: :func:`worker_output_dir` gives the others a private temporary
folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import keras
import tensorflow as tf

#: Files of an output folder that a non-chief worker copies, to resume where the chief resumes.
RESUME_FILES = (".training_state", "training_log.csv")


def is_multi_worker(strategy=None) -> bool:
    """Whether ``strategy`` (default: the current one) is a ``MultiWorkerMirroredStrategy``."""
    strategy = strategy or tf.distribute.get_strategy()
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def strategy_name(strategy) -> str:
    """The public name of ``strategy``'s class (TensorFlow's ``MultiWorkerMirroredStrategy`` is a
    ``CollectiveAllReduceStrategy`` underneath)."""
    return "MultiWorkerMirroredStrategy" if is_multi_worker(strategy) else type(strategy).__name__


def num_workers(strategy=None) -> int:
    """Worker processes of ``strategy``'s cluster (its chief included); 1 outside multi-worker training."""
    strategy = strategy or tf.distribute.get_strategy()
    if not is_multi_worker(strategy):
        return 1
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, [])) for job in ("chief", "worker"))


def is_chief(strategy=None) -> bool:
    """Whether this process is the chief: any process outside multi-worker training, else
    the task of type ``chief``, or worker 0 when the cluster has no chief."""
    strategy = strategy or tf.distribute.get_strategy()
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None or task_type == "chief":
        return True
    if task_type == "worker":
        return task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    return False


def worker_output_dir(out_dir: str | os.PathLike | None, strategy=None) -> Path | None:
    """Where this process writes its outputs: ``out_dir`` for the chief, a fresh temporary folder for
    the other workers (remove it with :func:`discard_worker_output_dir` when done).

    A non-chief worker's folder starts with a copy of the chief's resume state
    (:data:`RESUME_FILES`), so that every worker of a restarted run resumes from
    the same epoch; ``out_dir`` must then be on a file system all workers see,
    as for Keras' ``BackupAndRestore``.
    """
    if out_dir is None:
        return None
    if is_chief(strategy):
        return Path(out_dir)
    private = Path(tempfile.mkdtemp(prefix="atomsets-worker-"))
    for name in RESUME_FILES:
        source = Path(out_dir) / name
        if source.is_dir():
            shutil.copytree(source, private / name)
        elif source.is_file():
            shutil.copy2(source, private / name)
    return private


def discard_worker_output_dir(path: str | os.PathLike | None, out_dir: str | os.PathLike | None) -> None:
    """Remove ``path``, a folder from :func:`worker_output_dir`, unless it is ``out_dir`` itself."""
    if path is not None and (out_dir is None or Path(path).resolve() != Path(out_dir).resolve()):
        shutil.rmtree(path, ignore_errors=True)


def _build(model, dataset) -> None:
    """Create the model's, its optimizer's and its compiled loss's variables outside any replica context.

    Variables cannot be created inside ``strategy.run``; ``fit`` builds them
    from a peeked batch, so do we, from one batch of the (undistributed)
    dataset, symbolically: nothing is trained or counted.
    """
    if not isinstance(dataset, tf.data.Dataset):  # a dataset function: one input pipeline's batches
        dataset = dataset(tf.distribute.InputContext())
    x, y = next(iter(dataset.take(1)))
    if hasattr(model, "_symbolic_build"):  # what fit() does (Keras >= 3.0)
        model._symbolic_build(data_batch=(x, y, None))
        return
    if not model.built:  # pragma: no cover - older Keras
        model(tf.nest.map_structure(lambda t: t[:1], x), training=False)
    if not model.optimizer.built:  # pragma: no cover
        model.optimizer.build(model.trainable_variables)


def fit_multi_worker(
    model,
    dataset,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    initial_epoch: int = 0,
    callbacks: Iterable | None = None,
    verbose: int = 0,
    **unused,
):
    """``model.fit(dataset, epochs=..., steps_per_epoch=..., ...)`` under a ``MultiWorkerMirroredStrategy``.

    ``model`` must be built (or buildable from a batch) and compiled inside the
    strategy's scope; ``dataset`` yields global batches ``(x, y)`` and holds at
    least ``(epochs - initial_epoch) * steps_per_epoch`` of them, or is a
    function of a ``tf.distribute.InputContext`` giving one input pipeline's
    per-replica batches (``strategy.distribute_datasets_from_function``: each
    worker reads its own files). Every worker
    must call this with the same arguments. Callbacks see the model and the
    logs as under ``fit`` (``on_train_batch_end`` gets the batch's logs, averaged
    over the replicas); ``model.stop_training`` set on any worker stops all of
    them after the epoch, so they keep running the same steps.

    Returns the ``keras.callbacks.History`` of the run (also ``model.history``).
    Other keyword arguments of ``fit`` (``shuffle``, ...) are accepted and ignored.
    """
    strategy = model.distribute_strategy
    if steps_per_epoch is None:
        raise ValueError("fit_multi_worker needs steps_per_epoch (the dataset's cardinality is unknown)")
    with strategy.scope():
        _build(model, dataset)
        callback_list = keras.callbacks.CallbackList(
            list(callbacks or []), add_history=True, add_progbar=verbose != 0, verbose=verbose,
            epochs=epochs, steps=steps_per_epoch, model=model)
        iterator = iter(strategy.experimental_distribute_dataset(dataset) if isinstance(dataset, tf.data.Dataset)
                        else strategy.distribute_datasets_from_function(dataset))

        @tf.function
        def train_step(iterator):
            logs = strategy.run(model.train_step, args=(next(iterator),))
            return {k: strategy.reduce("MEAN", v, axis=None) for k, v in logs.items()}

        @tf.function
        def stop_votes(flag):  # how many workers' callbacks asked to stop (a collective)
            return strategy.reduce("SUM", strategy.run(tf.identity, args=(flag,)), axis=None)

        model.stop_training = False
        callback_list.on_train_begin()
        logs: dict = {}
        epoch_logs: dict = {}
        for epoch in range(initial_epoch, epochs):
            model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
            for step in range(steps_per_epoch):
                callback_list.on_train_batch_begin(step)
                logs = {k: float(v) for k, v in train_step(iterator).items()}
                callback_list.on_train_batch_end(step, logs)
            epoch_logs = dict(logs)  # the loss tracker's running mean: the epoch's mean loss
            callback_list.on_epoch_end(epoch, epoch_logs)
            model.stop_training = float(stop_votes(tf.constant(float(bool(model.stop_training))))) > 0
            if model.stop_training:
                break
        callback_list.on_train_end(logs=epoch_logs)
    return model.history
