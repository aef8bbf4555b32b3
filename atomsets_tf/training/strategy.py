"""tf.distribute strategies by name.

``auto``: Mirrored when more than one GPU is visible, OneDevice on one GPU,
the default strategy on CPU. ``one-device``, ``mirrored`` and ``multi-worker``
(MultiWorkerMirrored, configured from ``TF_CONFIG``) choose explicitly.

On a CPU-only machine ``replicas=N`` splits the CPU into N logical devices,
so that mirrored training runs (and is tested) without GPUs. That must happen
before TensorFlow initialises its devices: call :func:`get_strategy` first.
"""

from __future__ import annotations

from atomsets_tf.errors import StrategyError

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")


def split_cpu(replicas: int) -> None:
    """Split the (first) CPU into ``replicas`` logical devices.

    Raises:
        StrategyError: TensorFlow has already initialised its devices with a
            different split.
    """
    import tensorflow as tf

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
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise StrategyError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if replicas is not None and replicas < 1:
        raise StrategyError(f"replicas must be at least 1, got {replicas}")
    gpus = tf.config.list_physical_devices("GPU")
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
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
