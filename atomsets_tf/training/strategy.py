"""tf.distribute strategies by name.

``auto``: Mirrored when more than one GPU is visible, OneDevice on one GPU,
the default strategy on CPU. ``one-device``, ``mirrored`` and ``multi-worker``
(MultiWorkerMirrored, configured from ``TF_CONFIG``) choose explicitly.

On a CPU-only machine ``replicas=N`` splits the CPU into N logical devices,
so that mirrored training runs (and is tested) without GPUs. That must happen
before TensorFlow initialises its devices: call :func:`get_strategy` first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from atomsets_tf.errors import StrategyError

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
#: The environment variable MultiWorkerMirroredStrategy reads its cluster from.
TF_CONFIG_ENV = "TF_CONFIG"
#: Task types TensorFlow accepts in a ``TF_CONFIG`` cluster.
TF_CONFIG_TASK_TYPES = ("chief", "worker", "ps", "evaluator")


def _tf_config_error(why: str) -> StrategyError:
    return StrategyError(f"{TF_CONFIG_ENV} (for --strategy multi-worker): {why}")


def _check_cluster(cluster) -> dict[str, list[str]]:
    """A ``TF_CONFIG`` ``cluster``: task type -> list of ``host:port`` addresses."""
    if not isinstance(cluster, dict) or not cluster:
        raise _tf_config_error(f"'cluster' must be a non-empty object of task type -> addresses, got {cluster!r}")
    for task_type, addresses in cluster.items():
        if task_type not in TF_CONFIG_TASK_TYPES:
            raise _tf_config_error(f"cluster task type {task_type!r} is not one of {', '.join(TF_CONFIG_TASK_TYPES)}")
        if not isinstance(addresses, list) or not addresses:
            raise _tf_config_error(f"cluster[{task_type!r}] must be a non-empty list of 'host:port' strings, "
                                   f"got {addresses!r}")
        for address in addresses:
            host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise _tf_config_error(f"cluster[{task_type!r}] holds {address!r}, not a 'host:port' address")
    for single in ("chief", "evaluator"):
        if len(cluster.get(single, [])) > 1:
            raise _tf_config_error(f"the cluster may have at most one {single!r}, got {len(cluster[single])}")
    return cluster


def _check_task(task, cluster: dict[str, list[str]]) -> None:
    """A ``TF_CONFIG`` ``task``: ``{"type": <a task type of the cluster>, "index": <its position>}``."""
    if not isinstance(task, dict):
        raise _tf_config_error(f"'task' must be an object {{'type': ..., 'index': ...}}, got {task!r}")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in TF_CONFIG_TASK_TYPES:
        raise _tf_config_error(f"task.type must be one of {', '.join(TF_CONFIG_TASK_TYPES)}, got {task_type!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _tf_config_error(f"task.index must be a non-negative integer, got {index!r}")
    if task_type == "evaluator" and task_type not in cluster:
        return  # TensorFlow lets the evaluator stay out of the cluster
    if task_type not in cluster:
        raise _tf_config_error(f"task.type {task_type!r} is not in the cluster ({', '.join(cluster)})")
    if index >= len(cluster[task_type]):
        raise _tf_config_error(f"task.index {index} is out of range: the cluster has {len(cluster[task_type])} "
                               f"{task_type!r} task(s)")


def read_tf_config(environ: Mapping[str, str] | None = None) -> dict | None:
    """The ``TF_CONFIG`` of the environment, checked before TensorFlow reads it; ``None`` when unset.

    It must be a JSON object; its optional ``cluster`` maps task types (chief, worker, ps,
    evaluator) to lists of ``host:port`` strings, and a ``task`` ``{"type", "index"}`` (needed when
    the cluster has more than one task) must name one of them.

    Raises:
        StrategyError: naming TF_CONFIG and what is wrong with it.
    """
    raw = (os.environ if environ is None else environ).get(TF_CONFIG_ENV)
    if raw is None:
        return None
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise _tf_config_error(f"not valid JSON ({exc}): {raw[:80]!r}") from None
    if not isinstance(config, dict):
        raise _tf_config_error(f"must be a JSON object with 'cluster' and 'task', got {raw[:80]!r}")
    if "cluster" not in config:
        if "task" in config:
            raise _tf_config_error("has a 'task' but no 'cluster'")
        return config
    cluster = _check_cluster(config["cluster"])
    if "task" in config:
        _check_task(config["task"], cluster)
    elif sum(len(addresses) for addresses in cluster.values()) > 1:
        raise _tf_config_error("the cluster has several tasks but no 'task' says which one this process is")
    if not isinstance(config.get("rpc_layer", ""), str):
        raise _tf_config_error(f"'rpc_layer' must be a string, got {config['rpc_layer']!r}")
    return config


def split_cpu(replicas: int) -> None:
    """Split the (first) CPU into ``replicas`` logical devices.

    Raises:
        StrategyError: TensorFlow has already initialised its devices with a
            different split.
    """
    import tensorflow as tf  # deferred: the strategy module (TF_CONFIG checks) imports without TensorFlow

    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == replicas:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
        )
    except RuntimeError as exc:
        raise StrategyError(
            f"cannot split the CPU into {replicas} devices after TensorFlow has started ({exc}); "
            "choose the strategy before building any model"
        ) from None


def get_strategy(name: str = "auto", replicas: int | None = None):
    """A ``tf.distribute.Strategy``.

    Args:
        name: one of :data:`STRATEGIES`.
        replicas: for ``mirrored`` on a machine without GPUs, the number of
            logical CPU devices to mirror over (2 or more). With GPUs, the first
            ``replicas`` GPUs (all by default).

    Raises:
        StrategyError: an unknown name, ``replicas`` below 1, a CPU that cannot be split any
            more, or (``multi-worker``) a malformed ``TF_CONFIG`` (see :func:`read_tf_config`).
    """
    import tensorflow as tf  # deferred: TF_CONFIG is checked before TensorFlow starts

    if name not in STRATEGIES:
        raise StrategyError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if replicas is not None and replicas < 1:
        raise StrategyError(f"replicas must be at least 1, got {replicas}")
    if name == "multi-worker":
        read_tf_config()  # refuse a malformed TF_CONFIG before TensorFlow parses it
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if replicas and replicas > 1 and not gpus:
            name = "mirrored"
        elif len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        elif len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy("/gpu:0")
        else:
            return tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    # mirrored
    if gpus:
        devices = [f"/gpu:{k}" for k in range(min(replicas or len(gpus), len(gpus)))]
        return tf.distribute.MirroredStrategy(devices)
    n = replicas or 1
    if n > 1:
        split_cpu(n)
    return tf.distribute.MirroredStrategy([f"/cpu:{k}" for k in range(n)])
