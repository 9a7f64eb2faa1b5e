"""How the dilated convolutions run fast on CPUs: the CPU-kernel work network/diffwave.py uses,
kept apart so that the network reads as the paper's figure.

- `convolve` issues a Keras Conv1D layer as tf.nn.conv1d + bias_add + activation, which
  TensorFlow fuses into one oneDNN kernel on CPU (1.6x faster than the ops Keras emits).
- `fold_time` lets an undilated convolution compute a dilated one: TensorFlow's stock CPU
  kernels cannot differentiate dilated convolutions (`direct_dilated_conv_trains`).
- `resolve_dilated_conv` picks "direct" or "folded" for a job and the kernels at hand.
"""

import functools

import keras
import tensorflow as tf

DILATED_CONVS = ("direct", "folded")


def convolve(layer, x, x_scale=1.0, out_scale=1.0):
    """activation(out_scale * conv(x_scale * x)) for a Keras Conv1D layer, with the scales
    folded into its kernel and bias (Python floats; 1 costs nothing).

    Issued as tf.nn.conv1d + bias_add + activation: on CPU TensorFlow fuses that sequence into
    one oneDNN kernel, which it does not for the ops Keras emits (1.6x faster network).
    x: [batch, time, in] -> [batch, time, out]; or x folded by `fold_time` for the layer's
    dilation, [batch, rows, dilation, in] -> [batch, rows, dilation, out], computed as an
    undilated convolution that TensorFlow's stock CPU kernels can differentiate.
    """
    kernel, bias = layer.kernel, layer.bias
    if x_scale * out_scale != 1.0:
        kernel = kernel * (x_scale * out_scale)
    if out_scale != 1.0:
        bias = bias * out_scale
    if x.shape.rank == 4:
        y = tf.nn.conv2d(x, kernel[:, None], 1, layer.padding.upper())
    else:
        y = tf.nn.conv1d(x, kernel, 1, layer.padding.upper(), dilations=layer.dilation_rate[0])
    return layer.activation(tf.nn.bias_add(y, bias))


def fold_time(x, dilation):
    """Folds time into rows of `dilation` samples: sample k * dilation + r goes to row k,
    column r, so the samples a dilated kernel reaches, dilation apart, are neighbouring rows of
    one column, and the dilated 'same' convolution along time is an undilated 'same'
    convolution along rows (its one-row zero padding is `dilation` zero samples).

    x: [batch, time, C] -> ([batch, ceil(time / dilation), dilation, C], unfold), where unfold
    turns [batch, rows, dilation, C'] back into [batch, time, C'] (zeros pad the fold).
    """
    batch, time = tf.shape(x)[0], tf.shape(x)[1]
    padded = tf.pad(x, [[0, 0], [0, (-time) % dilation], [0, 0]])
    grid = tf.reshape(padded, [batch, -1, dilation, x.shape[-1]])
    return grid, lambda y: tf.reshape(y, [batch, -1, y.shape[-1]])[:, :time]


@functools.cache
def direct_dilated_conv_trains(dtype="float32"):
    """Whether this machine's kernels can differentiate a dilated tf.nn.conv1d of `dtype`.

    oneDNN's can (TensorFlow turns it on by default on AVX-512-class CPUs) and so can GPUs;
    TensorFlow's stock CPU kernels refuse dilations > 1 in the backward pass.
    """
    x, kernel = tf.zeros([1, 8, 2], dtype), tf.zeros([3, 2, 2], dtype)
    try:
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = tf.nn.conv1d(x, kernel, 1, "SAME", dilations=2)
        tape.gradient(y, [x, kernel])
        return True
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return False


def resolve_dilated_conv(choice="auto", training=True, jit=False):
    """The DILATED_CONVS entry to use for `choice` ("auto" or one of them), and why.

    Returns (dilated_conv, reason). "auto" is direct for generation (every kernel computes the
    forward pass) and under XLA, and for training wherever the kernels can differentiate it;
    folded elsewhere.
    """
    if choice != "auto":
        if choice not in DILATED_CONVS:
            raise ValueError(f"dilated_conv={choice!r}; choose auto or one of {DILATED_CONVS}")
        return choice, "chosen"
    if not training:
        return "direct", "every kernel runs it forward"
    if jit:
        return "direct", "XLA trains it"
    if direct_dilated_conv_trains(keras.mixed_precision.dtype_policy().compute_dtype):
        return "direct", "this machine's kernels train it"
    return "folded", ("TensorFlow's stock CPU kernels cannot train dilated convolutions and "
                      "oneDNN is off")
