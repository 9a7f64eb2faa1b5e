"""A DiffWave evaluated in overlapping windows: any length of audio in bounded memory, with
exactly the result of one call on the whole signal. What the samplers call as model(x_t, t)."""

import math

import tensorflow as tf


def windowed(model, window, halo, on_window=None):
    """The model evaluated on overlapping windows of at most `window` + 2 `halo` samples.

    A fully convolutional network's output at sample i depends only on inputs within its
    receptive field, so with `halo` >= (receptive field - 1) / 2 each window's centre is
    exactly what the whole signal would give, and memory stays bounded by the window size.

    Args:
      model: (audio [batch, time, 1], t [batch], *per-example inputs [batch]) ->
        [batch, time, 1].
      on_window: called after each window with (windows done, windows in all).
    Returns:
      the same kind of callable, for any time.
    """
    def evaluate(audio, steps, *per_example):
        length = int(audio.shape[1])
        count = math.ceil(length / window)
        pieces = []
        for number, start in enumerate(range(0, length, window), 1):
            end = min(start + window, length)
            low, high = max(0, start - halo), min(length, end + halo)
            pieces.append(model(audio[:, low:high], steps, *per_example)[:, start - low:end - low])
            if on_window:
                on_window(number, count)
        return tf.concat(pieces, axis=1)
    return evaluate


def windowed_network(network, window, on_window=None, jit=False):
    """A DiffWave as the samplers' model(x_t, t), evaluated in windows of `window` samples with
    the halo its receptive field needs; one traced graph serves every window length (XLA, with
    `jit`, compiles one per shape). A labelled DiffWave's is model(x_t, t, labels int32 [batch]
    = all "no label"); `diffusion.samplers.guided` gives it a label and guidance."""
    signature = [tf.TensorSpec([None, None, 1]), tf.TensorSpec([None])]
    if network.no_label:
        signature.append(tf.TensorSpec([None], tf.int32))

    @tf.function(input_signature=signature, jit_compile=jit)
    def model(*inputs):
        return network(inputs)
    evaluate = windowed(model, window, (network.receptive_field - 1) // 2, on_window)
    if not network.no_label:
        return evaluate

    def with_labels(audio, steps, labels=None):
        if labels is None:
            labels = tf.fill(tf.shape(steps), network.no_label)
        return evaluate(audio, steps, labels)
    return with_labels
