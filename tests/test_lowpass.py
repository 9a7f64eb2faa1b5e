import numpy as np
import pytest
import scipy.signal

import params as params_lib
from data import lowpass, pipeline


@pytest.fixture(scope="module")
def params():
    return params_lib.preset("base")


@pytest.fixture(scope="module")
def response(params):
    taps = pipeline.model_lowpass(params)
    frequencies, gains = scipy.signal.freqz(taps, worN=1 << 16, fs=params.input_rate)
    return frequencies, np.abs(gains)


def test_stopband_attenuation_at_least_60_db_above_new_nyquist(params, response):
    frequencies, gains = response
    new_nyquist = params.sample_rate / 2
    attenuation_db = -20 * np.log10(gains[frequencies >= new_nyquist].max())
    assert attenuation_db >= 60


def test_passband_ripple_at_most_0_1_db(params, response):
    frequencies, gains = response
    passband = gains[frequencies <= pipeline.model_passband_edge(params)]
    assert 20 * np.log10(passband.max() / passband.min()) <= 0.1
    assert abs(20 * np.log10(passband.mean())) < 0.05  # unity gain, not just flat


def test_taps_are_odd_and_symmetric(params):
    taps = pipeline.model_lowpass(params)
    assert len(taps) % 2 == 1
    np.testing.assert_allclose(taps, taps[::-1])


def test_a_tighter_stopband_needs_more_taps():
    loose = lowpass.design_lowpass(22050, 3, stopband_db=60.0)
    tight = lowpass.design_lowpass(22050, 3, stopband_db=90.0)
    assert len(tight) > len(loose)


def _snr_db(reference, estimate):
    return 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2))


def test_decimated_signal_matches_scipy_resample_poly(params):
    rate, factor = params.input_rate, params.decimation
    rng = np.random.default_rng(0)
    time = np.arange(3 * rate) / rate
    # A band-limited test signal: partials spread over the passband.
    frequencies = rng.uniform(50, pipeline.model_passband_edge(params) * 0.95, 12)
    signal = sum(np.sin(2 * np.pi * f * time + rng.uniform(0, 6.3)) for f in frequencies)
    signal = (signal / np.abs(signal).max()).astype(np.float32)

    ours = lowpass.decimate(signal, pipeline.model_lowpass(params), factor).numpy()
    reference = scipy.signal.resample_poly(signal.astype(np.float64), 1, factor)
    assert ours.shape == reference.shape == (len(signal) // factor,)
    interior = slice(200, -200)  # the two filters differ only in how they treat the edges
    assert _snr_db(reference[interior], ours[interior]) >= 40


def test_decimation_removes_what_would_alias(params):
    rate, factor = params.input_rate, params.decimation
    time = np.arange(rate) / rate
    # 5 kHz is above the new Nyquist (3675 Hz) and would fold to 2350 Hz.
    above = np.sin(2 * np.pi * 5000 * time).astype(np.float32)
    out = lowpass.decimate(above, pipeline.model_lowpass(params), factor).numpy()
    assert np.sqrt(np.mean(out[200:-200] ** 2)) < 10 ** (-60 / 20)


def test_output_length_for_any_input_length(params):
    taps = pipeline.model_lowpass(params)
    for length in (1, 2, 3, 4, 100, 1001):
        out = lowpass.decimate(np.ones(length, np.float32), taps, params.decimation)
        assert out.shape == (-(-length // params.decimation),)


def test_decimation_of_a_batch_is_each_clip_decimated(params):
    rng = np.random.default_rng(1)
    batch = rng.standard_normal((3, 999)).astype(np.float32)
    taps = pipeline.model_lowpass(params)
    together = lowpass.decimate(batch, taps, params.decimation).numpy()
    for clip, out in zip(batch, together):
        np.testing.assert_allclose(out, lowpass.decimate(clip, taps, params.decimation),
                                   atol=1e-6)


@pytest.mark.parametrize("factor", [3, 9])
def test_interpolation_matches_scipy_upfirdn(factor):
    taps = lowpass.design_lowpass(22050, factor)
    low = np.random.default_rng(2).standard_normal((2, 300)).astype(np.float32)
    ours = lowpass.interpolate(low, taps, factor).numpy()
    half = (len(taps) - 1) // 2
    for clip, out in zip(low, ours):
        reference = scipy.signal.upfirdn(taps * factor, clip.astype(np.float64), up=factor)
        np.testing.assert_allclose(out, reference[half:half + len(clip) * factor], atol=1e-5)


@pytest.mark.parametrize("factor", [3, 9])
def test_interpolation_undoes_the_decimation_of_band_limited_audio(factor):
    rate = 22050
    taps = lowpass.design_lowpass(rate, factor)
    time = np.arange(2 * rate) / rate
    edge = lowpass.passband_edge(rate, factor)
    signal = sum(np.sin(2 * np.pi * f * time + f) for f in (0.1 * edge, 0.5 * edge, 0.9 * edge))
    signal = (signal / 3).astype(np.float32)
    low = lowpass.decimate(signal, taps, factor)
    back = lowpass.interpolate(low, taps, factor).numpy()
    assert back.shape == signal.shape
    interior = slice(len(taps), -len(taps))  # zero outside the clip: the edges differ
    assert _snr_db(signal[interior], back[interior]) >= 50
