"""Sampler plans, fractional steps, x0 clipping, windowed evaluation and per-example noise."""

import numpy as np
import pytest
import tensorflow as tf

import params as params_lib
from diffusion import Diffusion, beta_schedule, samplers
from network import DiffWave
from network.diffwave import step_sinusoids
from network.windowed import windowed, windowed_network
from params import UserError


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion(beta_schedule("linear", 50, 1e-4, 0.05))


def random_model(seed=0):
    """A fixed noise predictor that depends on x and t, for checking sampler algebra."""
    def model(x, t):
        return tf.sin(3 * x + tf.reshape(t, [-1] + [1] * (len(x.shape) - 1)) / 7 + seed)
    return model


def test_step_embedding_is_exact_at_integers_and_blends_between_them():
    integers = step_sinusoids(tf.constant([0.0, 3.0, 49.0])).numpy()
    frequencies = (10.0 ** (np.arange(64) * 4.0 / 63)).astype(np.float32)
    # Angles rounded to float32 as the network's are, then sines in float64.
    angles = (np.float32([0.0, 3.0, 49.0])[:, None] * frequencies).astype(np.float64)
    np.testing.assert_allclose(integers, np.concatenate([np.sin(angles), np.cos(angles)], 1),
                               atol=1e-4)
    blended = step_sinusoids(tf.constant([3.25])).numpy()
    neighbours = step_sinusoids(tf.constant([3.0, 4.0])).numpy()
    np.testing.assert_allclose(blended[0], 0.75 * neighbours[0] + 0.25 * neighbours[1],
                               atol=1e-6)


def test_fractional_steps_match_noise_levels(diffusion):
    trained = diffusion.alpha_bars64
    midway = ((np.sqrt(trained[10]) + np.sqrt(trained[11])) / 2) ** 2
    steps = diffusion.fractional_steps([trained[0], trained[7], midway, trained[-1]])
    np.testing.assert_allclose(steps, [0, 7, 10.5, 49], atol=1e-9)
    outside = diffusion.fractional_steps([1.0, trained[-1] / 2])
    assert np.isnan(outside).all()


@pytest.mark.parametrize("preset", ["tiny", "base", "large"])
def test_default_fast_schedule_fits_every_preset(preset):
    steps = [step.network_step for step in
             samplers.fast_plan(Diffusion.from_params(params_lib.preset(preset)))]
    assert len(steps) == len(samplers.FAST_SCHEDULE)
    assert steps[-1] == pytest.approx(0) and np.all(np.diff(steps) < 0)  # noisiest first


def test_fast_schedule_outside_training_range_names_the_beta(diffusion):
    with pytest.raises(UserError, match=r"beta 0\.9 \(step 3 of 3\)"):
        samplers.fast_plan(diffusion, [1e-4, 0.2, 0.9])
    with pytest.raises(UserError, match="1.5 does not"):
        samplers.fast_plan(diffusion, [1e-4, 1.5])


def test_fast_on_the_training_schedule_is_ddpm(diffusion):
    shape = [3, 40, 1]
    fast = samplers.sample(samplers.fast_plan(diffusion, diffusion.betas64), random_model(),
                           shape, samplers.batch_noise(5))
    ddpm = samplers.sample(samplers.ddpm_plan(diffusion), random_model(), shape,
                           samplers.batch_noise(5))
    np.testing.assert_allclose(fast.numpy(), ddpm.numpy(), atol=1e-5)


def test_ddim_step_count_is_checked(diffusion):
    assert len(samplers.ddim_plan(diffusion, 50)) == 50
    assert [step.schedule_step for step in samplers.ddim_plan(diffusion, 3)] == [49, 24, 0]
    for bad in (0, 51):
        with pytest.raises(UserError, match=f"--steps={bad}: ddim needs 1 to 50"):
            samplers.ddim_plan(diffusion, bad)


def test_ddim_eta_zero_is_deterministic_given_x_T(diffusion):
    plan = samplers.ddim_plan(diffusion, 10)
    x_T = tf.random.stateless_normal([2, 16], [1, 1])

    def noise(seed):
        return lambda index, shape: x_T if index == 0 else tf.random.stateless_normal(
            shape, [seed, index])
    a, b = (samplers.sample(plan, random_model(), [2, 16], noise(seed)) for seed in (1, 2))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    stochastic = samplers.ddim_plan(diffusion, 10, eta=1.0)
    c, d = (samplers.sample(stochastic, random_model(), [2, 16], noise(seed)) for seed in (1, 2))
    assert np.abs(c.numpy() - d.numpy()).max() > 1e-2


def test_clipped_x0_lies_in_range_and_in_range_x0_is_untouched(diffusion):
    t = tf.constant([5, 30])
    x_t = tf.random.stateless_normal([2, 64, 1], [1, 2]) * 3
    eps = tf.random.stateless_normal([2, 64, 1], [3, 4])
    clipped = diffusion.predict_x0(x_t, t, diffusion.clip_x0(x_t, t, eps)).numpy()
    assert np.abs(clipped).max() <= 1 + 1e-4 and np.abs(
        diffusion.predict_x0(x_t, t, eps).numpy()).max() > 1.5
    x0 = tf.random.stateless_uniform([2, 64, 1], [5, 6], -0.9, 0.9)
    x_t = diffusion.q_sample(x0, t, eps)
    np.testing.assert_allclose(diffusion.clip_x0(x_t, t, eps).numpy(), eps.numpy(), atol=1e-3)


@pytest.fixture(scope="module")
def network():
    """A tiny DiffWave with every weight random (the output layer too), as a tf.function."""
    params = params_lib.preset("tiny", residual_layers=6, dilation_cycle=3)
    model = DiffWave(params).build_for()
    for index, weight in enumerate(model.weights):
        weight.assign(tf.random.stateless_normal(weight.shape, [index, 0]) * 0.3)
    return model, tf.function(model, reduce_retracing=True)


def test_windowed_equals_whole_with_the_receptive_field_halo(network):
    model, function = network
    halo = (model.receptive_field - 1) // 2
    audio = tf.random.stateless_normal([2, 1000, 1], [7, 7])
    steps = tf.constant([3.0, 20.5])
    inputs = {"audio": audio, "steps": steps}
    whole = function(inputs).numpy()
    calls = []
    in_windows = windowed(function, 128, halo, lambda done, total: calls.append(total))
    np.testing.assert_allclose(in_windows(inputs).numpy(), whole, atol=1e-4)
    assert len(calls) == 8  # ceil(1000 / 128) windows, each reported
    short_halo = windowed(function, 128, halo // 4)
    assert np.abs(short_halo(inputs).numpy() - whole).max() > 1e-3


def test_chunked_sampling_equals_unchunked_sampling(network):
    model, function = network
    halo = (model.receptive_field - 1) // 2
    plan = samplers.fast_plan(Diffusion.from_params(params_lib.preset("tiny")))
    shape = [2, 700, 1]
    whole = samplers.sample(plan, samplers.denoiser(function), shape,
                            samplers.example_noise(3, 0), clip_x0=True)
    chunked = samplers.sample(plan, samplers.denoiser(windowed(function, 100, halo)), shape,
                              samplers.example_noise(3, 0), clip_x0=True)
    assert np.isfinite(whole.numpy()).all()
    np.testing.assert_allclose(chunked.numpy(), whole.numpy(), atol=1e-4)


def test_example_noise_does_not_depend_on_the_batch():
    alone = samplers.example_noise(11, 2)(4, [1, 50, 1]).numpy()
    batched = samplers.example_noise(11, 0)(4, [3, 50, 1]).numpy()
    np.testing.assert_array_equal(batched[2], alone[0])
    assert not np.allclose(batched[0], batched[1])
    other_seed = samplers.example_noise(12, 2)(4, [1, 50, 1]).numpy()
    assert not np.allclose(other_seed, alone)


def test_xla_compiled_network_matches_the_plain_one(network):
    model, function = network
    audio = tf.random.stateless_normal([1, 700, 1], [8, 8])
    steps = tf.constant([12.0])
    inputs = {"audio": audio, "steps": steps}
    compiled = windowed_network(model, 300, jit=True)
    np.testing.assert_allclose(compiled(inputs).numpy(), function(inputs).numpy(), atol=1e-4)


RATE, BANDS = 7350, ((280.0, 320.0), (1650.0, 1750.0))  # a low and a high pitch range


def two_band_model(diffusion, length, rms=0.1):
    """The exact noise predictor for data that is, with even odds, Gaussian noise confined to one
    of BANDS (RMS `rms`, circular over `length` samples): independent Fourier bins, so the
    posterior is a two-component Wiener filter. A stand-in for a trained model whose samples are
    known: each is a random tone cluster in one band."""
    hz = np.fft.rfftfreq(length, 1 / RATE)
    variances = []
    for low, high in BANDS:
        inside = (hz >= low) & (hz <= high)
        # E|X(k)|^2 of the unnormalised rfft that gives a per-sample variance rms^2.
        variances.append(np.where(inside, rms ** 2 * length ** 2 / (2 * inside.sum()), 1e-9))

    def model(x, t):
        signal_rate, noise_rate = (r.numpy()[:, None] for r in diffusion.rates(t))
        spectrum = np.fft.rfft(x.numpy()[..., 0], axis=1)
        likelihoods, means = [], []
        for variance in variances:
            total = signal_rate ** 2 * variance + noise_rate ** 2 * length
            likelihoods.append(-np.sum(np.abs(spectrum) ** 2 / total + np.log(total), axis=1))
            means.append(signal_rate * variance / total * spectrum)
        weights = np.exp(np.array(likelihoods) - np.max(likelihoods, axis=0))
        weights /= weights.sum(axis=0)
        x0 = np.fft.irfft(np.einsum("cb,cbk->bk", weights, np.array(means)), length, axis=1)
        return tf.constant(((x.numpy()[..., 0] - signal_rate * x0) / noise_rate)[..., None],
                           tf.float32)
    return model


def band_of(clips):
    """Index into BANDS of each clip's strongest frequency, float [n, time]."""
    hz = np.fft.rfftfreq(clips.shape[1], 1 / RATE)
    peaks = hz[np.argmax(np.abs(np.fft.rfft(clips * np.hanning(clips.shape[1]), axis=1)), 1)]
    return (peaks > 800).astype(int)


@pytest.mark.parametrize("pitch", [300.0, 1700.0])
def test_continuation_keeps_the_prompt_and_stays_in_its_pitch_range_without_a_click(pitch):
    """RePaint on a tone prompt with a model whose samples are tones in one of two pitch ranges:
    the first half is the prompt bit for bit; the second stays in the prompt's range (chance,
    without the prompt, is one in two), and the seam's step is about the prompt's largest."""
    import evaluate

    diffusion = Diffusion(beta_schedule("linear", 50, 1e-4, 0.2))
    length, count = 1024, 16
    pitch = round(pitch * length / RATE) * RATE / length  # on a Fourier bin, as the model's are
    prompt = 0.1 * np.sqrt(2) * np.sin(2 * np.pi * pitch * np.arange(length // 2) / RATE)
    keep = samplers.known(np.concatenate([prompt, np.zeros(length // 2)]), length // 2, length)
    model, plan = two_band_model(diffusion, length), samplers.ddpm_plan(diffusion)
    shape = [count, length, 1]
    continued = samplers.sample(plan, model, shape, samplers.batch_noise(1), keep=keep)
    continued = continued.numpy()[..., 0]
    np.testing.assert_array_equal(continued[:, :length // 2],
                                  np.broadcast_to(np.float32(prompt), (count, length // 2)))
    band = int(pitch > 800)
    assert np.mean(band_of(continued[:, length // 2:]) == band) >= 15 / 16
    free = samplers.sample(plan, model, shape, samplers.batch_noise(1)).numpy()[..., 0]
    assert 3 / 16 <= np.mean(band_of(free[:, length // 2:]) == band) <= 13 / 16  # chance
    jumps = [evaluate.seam_ratios(clip, length // 2, prompt)[0] for clip in continued]
    assert np.median(jumps) < 1.5 and max(jumps) < 2.5
