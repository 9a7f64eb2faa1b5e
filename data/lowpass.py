"""Anti-aliasing FIR low-pass: decimation, and the interpolation that undoes it.

The taps are designed once with `scipy.signal` (Kaiser window) from two rates; TensorFlow
applies them in the graph: decimation as a strided convolution (only every `factor`-th output is
computed), interpolation as the transposed convolution (the zeros between samples are never
multiplied). The pipeline, the upsamplers' training pairs and generation share these functions.
"""

import numpy as np
import scipy.signal
import tensorflow as tf


def design_lowpass(input_rate, factor, stopband_db=70.0, transition=0.1):
    """Linear-phase low-pass taps at `input_rate` for the rate `input_rate / factor`.

    The passband ends at (1 - transition) * new_nyquist and the stopband starts at the new
    Nyquist, so nothing that would alias survives with more than -stopband_db.

    Returns:
      float64 array [num_taps], num_taps odd (a whole-sample delay, so outputs line up with
      inputs).
    """
    new_nyquist = input_rate / factor / 2
    width = transition * new_nyquist
    num_taps, beta = scipy.signal.kaiserord(stopband_db, width / (input_rate / 2))
    num_taps |= 1
    return scipy.signal.firwin(num_taps, new_nyquist - width / 2, window=("kaiser", beta),
                               fs=input_rate)


def passband_edge(input_rate, factor, transition=0.1):
    """Highest frequency (Hz) the low-pass is designed to keep intact."""
    return (1 - transition) * input_rate / factor / 2


def _batched(audio):
    """float32 [..., time] -> ([batch, time, 1], a function restoring the leading dims)."""
    audio = tf.convert_to_tensor(audio, tf.float32)
    leading = tf.shape(audio)[:-1]
    flat = tf.reshape(audio, [-1, tf.shape(audio)[-1], 1])
    return flat, lambda out: tf.reshape(out, tf.concat([leading, tf.shape(out)[1:2]], 0))


def _kernel(taps, gain=1.0):
    return tf.constant((gain * np.asarray(taps, np.float32))[:, None, None])  # [taps, 1, 1]


def decimate(audio, taps, factor):
    """Low-pass filters and keeps every `factor`-th sample, in the graph.

    Output sample j is centred on input sample j * factor; the signal is zero outside.

    Args:
      audio: float32 [..., time] (one clip or a batch).
      taps: float array [num_taps], num_taps odd and symmetric (design_lowpass).
      factor: int.
    Returns:
      float32 [..., ceil(time / factor)].
    """
    half = (len(taps) - 1) // 2
    flat, restore = _batched(audio)
    padded = tf.pad(flat, [[0, 0], [half, half], [0, 0]])  # [batch, time + taps - 1, 1]
    return restore(tf.nn.conv1d(padded, _kernel(taps), stride=factor, padding="VALID")[..., 0])


def interpolate(audio, taps, factor):
    """Raises the rate `factor` times: zeros between the samples, then the same low-pass (with
    gain `factor`), so a band-limited signal's decimation interpolates back to it.

    Output sample j * factor is centred on input sample j; the signal is zero outside.

    Args:
      audio: float32 [..., time] at the low rate.
      taps: float array [num_taps], num_taps odd and symmetric, designed at the high rate.
      factor: int.
    Returns:
      float32 [..., time * factor].
    """
    half = (len(taps) - 1) // 2
    flat, restore = _batched(audio)
    batch, time = tf.shape(flat)[0], tf.shape(flat)[1]
    # The transposed convolution adds input j's taps into outputs j * factor onwards, so
    # output half + m is centred on m. One zero more at the end keeps the whole span inside.
    padded = tf.pad(flat, [[0, 0], [0, 1], [0, 0]])
    length = time * factor + len(taps)
    out = tf.nn.conv1d_transpose(padded, _kernel(taps, factor), [batch, length, 1],
                                 strides=factor, padding="VALID")
    return restore(out[:, half:half + time * factor, 0])
