"""What both timing scripts share: the project on sys.path, what machine a figure comes from,
and this machine's measured float32 matmul peak, the yardstick for their GFLOP/s."""

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cli  # noqa: E402

cli.quiet_tensorflow()

import tensorflow as tf  # noqa: E402
from tensorflow.python.util import _pywrap_util_port  # noqa: E402

from network import kernels, runtime  # noqa: E402

def machine():
    """{"cpu": model name (family, model), "cpu_flags": its SPEED_FLAGS, "onednn": whether TF runs
    oneDNN kernels (on by default on AVX-512-class CPUs; TF_ENABLE_ONEDNN_OPTS sets it)}."""
    cpu = runtime.cpu_info()
    return {"cpu": f"{cpu['model']} ({cpu['generation']})",
            "cpu_flags": sorted(cpu["flags"] & kernels.SPEED_FLAGS),
            "onednn": bool(_pywrap_util_port.IsMklEnabled())}


def matmul_peak_gflops(size=4096, repeats=5):
    """Best GFLOP/s of a float32 [size, size] x [size, size] matmul, after a warm-up."""
    matrix = tf.random.normal([size, size])
    multiply = tf.function(lambda a: tf.reduce_sum(tf.matmul(a, a)))
    multiply(matrix).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        multiply(matrix).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9
