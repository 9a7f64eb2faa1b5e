"""A DiffWave evaluated in overlapping windows: any length of audio in bounded memory, with
exactly the result of one call on the whole signal."""

import math

import tensorflow as tf

# The inputs a DiffWave takes, by name (network/diffwave.py): per-sample ones are
# [batch, time, channels] and cut into windows, per-example ones [batch] go to every window.
INPUT_SPECS = {"audio": tf.TensorSpec([None, None, 1]), "steps": tf.TensorSpec([None]),
               "labels": tf.TensorSpec([None], tf.int32),
               "condition": tf.TensorSpec([None, None, 1]),
               "condition_level": tf.TensorSpec([None])}


def windowed(model, window, halo, on_window=None):
    """The model evaluated on overlapping windows of at most `window` + 2 `halo` samples.

    A fully convolutional network's output at sample i depends only on inputs within its
    receptive field, so with `halo` >= (receptive field - 1) / 2 each window's centre is
    exactly what the whole signal would give, and memory stays bounded by the window size.

    Args:
      model: {name: tensor} -> [batch, time, 1]; entries of rank 3 ([batch, time, channels])
        are cut into windows, the others ([batch]) are given whole.
      on_window: called after each window with (windows done, windows in all).
    Returns:
      the same kind of callable, for any time.
    """
    def evaluate(inputs):
        length = int(inputs["audio"].shape[1])
        count = math.ceil(length / window)
        pieces = []
        for number, start in enumerate(range(0, length, window), 1):
            end = min(start + window, length)
            low, high = max(0, start - halo), min(length, end + halo)
            part = {name: value[:, low:high] if value.shape.rank == 3 else value
                    for name, value in inputs.items()}
            pieces.append(model(part)[:, start - low:end - low])
            if on_window:
                on_window(number, count)
        return tf.concat(pieces, axis=1)
    return evaluate


def windowed_network(network, window, on_window=None, jit=False):
    """A DiffWave, {name: tensor} -> predicted noise, evaluated in windows of `window` samples
    with the halo its receptive field needs. One graph is traced per set of input names, and it
    serves every window length (XLA, with `jit`, compiles one per shape).
    `diffusion.samplers.denoiser` makes the samplers' model(x_t, t) of it."""
    traced = {}

    def model(inputs):
        names = tuple(sorted(inputs))
        if names not in traced:
            traced[names] = tf.function(network, jit_compile=jit, input_signature=[
                {name: INPUT_SPECS[name] for name in names}])
        return traced[names](inputs)
    return windowed(model, window, (network.receptive_field - 1) // 2, on_window)
