"""How the network runs on this machine: threads, precision, tf.distribute strategy.

`configure` must run before TensorFlow executes its first op (threads and a multi-worker
cluster can only be set then), so train.py and generate.py call it first thing in main.
"""

import json
import os

import keras
import tensorflow as tf
from absl import flags, logging

from network.diffwave import DILATED_CONVS, resolve_dilated_conv
from network.kernels import KERNELS, PRECISIONS, cpu_info
from params import UserError

STRATEGIES = ("default", "mirrored", "multiworker")


def define_flags(distribute):
    """Thread, precision and XLA flags; `--strategy` too when `distribute`."""
    flags.DEFINE_enum("precision", "float32", PRECISIONS,
                      "Compute dtype of the network: float32, or Keras mixed precision "
                      "(float32 weights; mixed_float16 adds loss scaling). The diffusion math, "
                      "schedule and loss stay float32. mixed_bfloat16 trains ~1.7x faster on "
                      "CPUs with AMX (Xeon 4th gen+); mixed_float16 is for GPUs.")
    flags.DEFINE_integer("intra_op_threads", 0, "Threads inside one op (a convolution); 0 lets "
                         "TensorFlow use every core, the fastest setting measured on CPU.")
    flags.DEFINE_integer("inter_op_threads", 0, "Ops run side by side; 0 lets TensorFlow "
                         "choose.")
    flags.DEFINE_enum("dilated_conv", "auto", ("auto",) + DILATED_CONVS,
                      "How dilated convolutions run: direct (tf.nn.conv1d with dilations; "
                      "trains only where oneDNN or a GPU is on), folded (time folded so that "
                      "an undilated convolution does the same; trains on every CPU), or auto: "
                      "direct where it can train and for generation, else folded.")
    flags.DEFINE_enum("kernels", "auto", KERNELS,
                      "CPU kernels: onednn, stock (TensorFlow's own), or auto: whichever ran "
                      "this job faster on this CPU, measured once and remembered in the cache "
                      "folder (network/kernels.py). Overrides TF_ENABLE_ONEDNN_OPTS.")
    flags.DEFINE_boolean("jit", False, "Compile the network with XLA (slower than the fused "
                         "oneDNN kernels on CPU; try it on GPU).")
    if distribute:
        flags.DEFINE_enum("strategy", "default", STRATEGIES,
                          "tf.distribute strategy: default (one device), mirrored (every local "
                          "GPU, else every logical CPU device), multiworker (several machines, "
                          "described by the TF_CONFIG environment variable; see README).")


def configure(precision="float32", intra_op_threads=0, inter_op_threads=0):
    """Sets threads and the Keras dtype policy for models built afterwards."""
    for name, value in (("intra_op_threads", intra_op_threads),
                        ("inter_op_threads", inter_op_threads)):
        if value < 0:
            raise UserError(f"--{name} must be >= 0 (got {value}); 0 lets TensorFlow choose")
    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
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


def dilated_conv_from_flags(training):
    """resolve_dilated_conv for --dilated_conv and --jit: (dilated_conv, a line saying which
    runs and why, for the command to print once its input has been checked)."""
    dilated_conv, reason = resolve_dilated_conv(flags.FLAGS.dilated_conv, training,
                                                flags.FLAGS.jit)
    return dilated_conv, (f"dilated convolutions: {dilated_conv} ({reason}; --dilated_conv "
                          "overrides)")


def configure_from_flags():
    configure(flags.FLAGS.precision, flags.FLAGS.intra_op_threads, flags.FLAGS.inter_op_threads)


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
