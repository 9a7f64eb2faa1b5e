"""How the network runs on this machine: threads, precision, tf.distribute strategy.

`configure` must run before TensorFlow executes its first op (threads and a multi-worker
cluster can only be set then), so the commands call it first thing in main.
"""

import json
import os

import keras
import tensorflow as tf
from absl import logging

from network.kernels import cpu_info
from params import UserError

STRATEGIES = ("default", "mirrored", "multiworker")


def configure(precision="float32", intra_op_threads=0, inter_op_threads=0):
    """Sets threads and the Keras dtype policy for models built afterwards."""
    for name, value in (("intra_op_threads", intra_op_threads),
                        ("inter_op_threads", inter_op_threads)):
        if value < 0:
            raise UserError(f"--{name} must be >= 0 (got {value}); 0 lets TensorFlow choose")
    # 0 is TensorFlow's own default: left unset, which also lets a process that has already
    # run TensorFlow (a test running the commands in-process) configure again.
    if intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    if inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    keras.mixed_precision.set_dtype_policy(precision)
    warning = precision_warning(precision)
    if warning:
        logging.warning(warning)


def precision_warning(precision):
    """A sentence when `precision` will be slow on this machine, else None."""
    if (precision == "mixed_bfloat16" and not has_bfloat16_hardware()
            and not tf.config.list_logical_devices("GPU")):
        return (f"--precision=mixed_bfloat16 on a CPU without bfloat16 hardware "
                f"({cpu_info()['model']} has neither AVX512_BF16 nor AMX): expect it to run "
                "several times slower than --precision=float32")
    return None


def has_bfloat16_hardware():
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_info()["flags"])


def make_strategy(name):
    """The tf.distribute strategy called `name` (one of STRATEGIES)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multiworker":
        config = os.environ.get("TF_CONFIG")
        if not config:
            raise UserError("--strategy=multiworker needs the TF_CONFIG environment variable "
                            "(the cluster's workers and this one's index); see README")
        try:
            cluster = json.loads(config)["cluster"]
        except (ValueError, KeyError, TypeError):
            raise UserError('TF_CONFIG is not JSON of the form {"cluster": {"worker": '
                            '["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
                            ) from None
        if "chief" not in cluster and "worker" not in cluster:
            raise UserError("TF_CONFIG's cluster lists no worker; see README")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def is_chief(strategy):
    """Whether this process writes checkpoints and summaries: always, except on the workers of a
    multi-worker cluster other than its chief (or worker 0 where no chief is named)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())
