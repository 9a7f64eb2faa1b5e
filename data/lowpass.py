"""Anti-aliasing FIR low-pass and decimation.

The taps are designed once with `scipy.signal` (Kaiser window); TensorFlow applies them in
the graph as a strided convolution, so only every `factor`-th output is ever computed.
"""

import numpy as np
import scipy.signal
import tensorflow as tf


def design_lowpass(params):
    """Linear-phase low-pass taps for decimating `params.input_rate` by `params.decimation`.

    The passband ends at (1 - transition) * new_nyquist and the stopband starts at the new
    Nyquist, so nothing that would alias survives with more than -lowpass_stopband_db.

    Returns:
      float64 array [num_taps], num_taps odd (a whole-sample delay, so outputs line up with
      inputs).
    """
    new_nyquist = params.input_rate / params.decimation / 2
    width = params.lowpass_transition * new_nyquist
    num_taps, beta = scipy.signal.kaiserord(params.lowpass_stopband_db,
                                            width / (params.input_rate / 2))
    num_taps |= 1
    return scipy.signal.firwin(num_taps, new_nyquist - width / 2, window=("kaiser", beta),
                               fs=params.input_rate)


def passband_edge(params):
    """Highest frequency (Hz) the low-pass is designed to keep intact."""
    return (1 - params.lowpass_transition) * params.input_rate / params.decimation / 2


def decimate(audio, taps, factor):
    """Low-pass filters and keeps every `factor`-th sample, in the graph.

    Output sample j is centred on input sample j * factor; the signal is zero outside.

    Args:
      audio: float32 [time].
      taps: float array [num_taps], num_taps odd and symmetric.
      factor: int.
    Returns:
      float32 [ceil(time / factor)].
    """
    half = (len(taps) - 1) // 2
    kernel = tf.constant(np.asarray(taps, np.float32)[:, None, None])  # [taps, in=1, out=1]
    padded = tf.pad(audio, [[half, half]])[None, :, None]  # [1, time + taps - 1, 1]
    return tf.nn.conv1d(padded, kernel, stride=factor, padding="VALID")[0, :, 0]
