import keras
import numpy as np
import pytest
import tensorflow as tf

import params as params_lib
from diffusion import Diffusion, beta_schedule, samplers
from network.diffwave import step_sinusoids


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion.from_params(params_lib.preset("base"))


@pytest.mark.parametrize("kind", ["linear", "quadratic", "sigmoid", "cosine"])
def test_schedules_are_valid(kind):
    betas = beta_schedule(kind, 200, 1e-4, 0.02)
    assert betas.shape == (200,) and (betas > 0).all() and (betas < 1).all()
    alpha_bars = np.cumprod(1 - betas)
    assert (np.diff(alpha_bars) < 0).all() and alpha_bars[-1] < 0.5


def test_paper_schedule_terminal_values(diffusion):
    assert diffusion.alpha_bars64[-1] == pytest.approx(0.132, abs=1e-3)
    # Raw loud music (variance 0.2) is over the warning level; normalised music is not.
    assert diffusion.terminal_snr(0.2) > 0.01 > diffusion.terminal_snr(0.01)
    notebook = Diffusion(beta_schedule("linear", 20, 1e-4, 0.02))
    assert notebook.alpha_bars64[-1] == pytest.approx(0.82, abs=0.01)


def test_forward_marginals_match_the_closed_form(diffusion):
    x0 = tf.fill([200000, 1], 0.7)
    for t in (0, 50, 199):
        steps = tf.fill([200000], t)
        x_t = diffusion.q_sample(x0, steps, tf.random.stateless_normal(x0.shape, [t, 1])).numpy()
        alpha_bar = diffusion.alpha_bars64[t]
        standard_error = np.sqrt((1 - alpha_bar) / len(x_t))
        assert abs(x_t.mean() - np.sqrt(alpha_bar) * 0.7) < 5 * standard_error
        assert x_t.var() == pytest.approx(1 - alpha_bar, rel=0.02)


def test_q_sample_works_for_audio_and_points(diffusion):
    for shape in ([3, 100, 1], [3, 2]):
        x0 = tf.ones(shape)
        x_t = diffusion.q_sample(x0, tf.constant([0, 1, 2]), tf.zeros(shape))
        expected = np.sqrt(diffusion.alpha_bars64[:3]).reshape([3] + [1] * (len(shape) - 1))
        np.testing.assert_allclose(x_t.numpy(), np.broadcast_to(expected, shape), rtol=1e-6)


def test_steps_are_drawn_per_example(diffusion):
    steps = diffusion.training_noise(tf.zeros([4096, 1]), [3, 4])[0].numpy().astype(int)
    assert len(np.unique(steps)) > 190 and steps.min() >= 0 and steps.max() < 200
    counts = np.bincount(steps, minlength=200)
    assert counts.max() < 3 * counts.mean()


def test_posterior_matches_float64_reference(diffusion):
    rng = np.random.default_rng(0)
    t = np.array([0, 1, 7, 100, 199])
    x0, eps = rng.normal(size=(2, 5, 32))
    betas, alpha_bars = diffusion.betas64, diffusion.alpha_bars64
    previous = np.concatenate([[1.0], alpha_bars[:-1]])[t][:, None]
    alpha_bar, beta = alpha_bars[t][:, None], betas[t][:, None]
    x_t = np.sqrt(alpha_bar) * x0 + np.sqrt(1 - alpha_bar) * eps
    # The textbook x0-form of the posterior mean, in float64.
    mean = (beta * np.sqrt(previous) / (1 - alpha_bar) * x0
            + (1 - previous) * np.sqrt(1 - beta) / (1 - alpha_bar) * x_t)
    variance = beta[:, 0] * (1 - previous[:, 0]) / (1 - alpha_bar[:, 0])

    ours = diffusion.posterior_mean(tf.constant(x_t, tf.float32), tf.constant(t),
                                    tf.constant(eps, tf.float32)).numpy()
    np.testing.assert_allclose(ours, mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(diffusion.posterior_variance(tf.constant(t)).numpy(), variance,
                               rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(diffusion.posterior_variance(tf.constant(t), "beta").numpy(),
                               betas[t], rtol=1e-6)
    np.testing.assert_allclose(diffusion.predict_x0(tf.constant(x_t, tf.float32), tf.constant(t),
                                                    tf.constant(eps, tf.float32)).numpy(),
                               x0, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_float64_reference(diffusion, eta):
    """Song et al. 2021, eq. 12, in float64: x_prev = sqrt(abar_prev) x0_pred
    + sqrt(1 - abar_prev - sigma^2) eps + sigma z, with sigma = eta sqrt((1 - abar_prev) /
    (1 - abar_t)) sqrt(1 - abar_t / abar_prev) and abar_prev = 1 for the clean signal (-1)."""
    rng = np.random.default_rng(1)
    t, t_previous = np.array([5, 50, 120, 199, 3]), np.array([2, 49, 60, 150, -1])
    x_t, eps, z = rng.normal(size=(3, 5, 32))
    alpha_bars = diffusion.alpha_bars64
    alpha_bar = alpha_bars[t][:, None]
    previous = np.where(t_previous >= 0, alpha_bars[np.maximum(t_previous, 0)], 1.0)[:, None]
    x0 = (x_t - np.sqrt(1 - alpha_bar) * eps) / np.sqrt(alpha_bar)
    sigma = eta * np.sqrt((1 - previous) / (1 - alpha_bar) * (1 - alpha_bar / previous))
    expected = np.sqrt(previous) * x0 + np.sqrt(1 - previous - sigma ** 2) * eps + sigma * z
    as32 = lambda values: tf.constant(values, tf.float32)  # noqa: E731
    ours = diffusion.ddim_step(as32(x_t), tf.constant(t), tf.constant(t_previous), as32(eps),
                               as32(z), eta).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    if eta == 1.0:  # one step back at eta 1 is the ancestral step (Song et al., section 4.1)
        consecutive = tf.constant([5, 50, 120, 199, 1])
        ancestral = diffusion.reverse_step(as32(x_t), consecutive, as32(eps), as32(z)).numpy()
        ddim = diffusion.ddim_step(as32(x_t), consecutive, consecutive - 1, as32(eps), as32(z),
                                   eta).numpy()
        np.testing.assert_allclose(ddim, ancestral, rtol=1e-4, atol=1e-4)


def test_last_reverse_step_adds_no_noise(diffusion):
    x_t, eps, noise = tf.ones([2, 8, 1]), tf.zeros([2, 8, 1]), tf.ones([2, 8, 1]) * 5
    steps = tf.constant([0, 0])
    np.testing.assert_array_equal(diffusion.reverse_step(x_t, steps, eps, noise).numpy(),
                                  diffusion.posterior_mean(x_t, steps, eps).numpy())
    later = diffusion.reverse_step(x_t, tf.constant([3, 3]), eps, noise)
    assert not np.allclose(later.numpy(), diffusion.posterior_mean(x_t, tf.constant([3, 3]),
                                                                   eps).numpy())


@pytest.mark.parametrize("kind, expected", [("l2", 2.0), ("l1", 4.0 / 3)])
def test_loss_is_a_mean_not_a_norm(kind, expected):
    diffusion = Diffusion(beta_schedule("linear", 10, 1e-4, 0.02), loss=kind)
    loss = diffusion.loss(tf.constant([[1.0, -1.0, 2.0]]), tf.constant([[0.0, 0.0, 0.0]]))
    assert float(loss) == pytest.approx(expected)


# --- The whole training + sampling math, on a 2-D swiss roll with a small MLP ---------------

def swiss_roll(count, seed):
    rng = np.random.default_rng(seed)
    angle = 1.5 * np.pi * (1 + 2 * rng.uniform(size=count))
    points = np.stack([angle * np.cos(angle), angle * np.sin(angle)], axis=1)
    # Radius up to 4.7: far enough from N(0, I) that a 5x closer sample set means learning.
    return (points / 3.0 + rng.normal(scale=0.02, size=points.shape)).astype(np.float32)


def sliced_wasserstein(a, b, directions=128, seed=0):
    angles = np.random.default_rng(seed).uniform(0, np.pi, directions)
    axes = np.stack([np.cos(angles), np.sin(angles)])
    return np.mean(np.abs(np.sort(a @ axes, axis=0) - np.sort(b @ axes, axis=0)))


class PointDenoiser(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = [keras.layers.Dense(128, activation="swish") for _ in range(3)]
        self.out = keras.layers.Dense(2)

    def call(self, x, t):
        h = tf.concat([x, step_sinusoids(t)], axis=1)
        for layer in self.hidden:
            h = layer(h)
        return self.out(h)


def train_swiss_roll(conditioning, prediction="eps"):
    """(diffusion, model(x_t, t) -> eps) after 2000 steps of training on the swiss roll."""
    keras.utils.set_random_seed(0)
    diffusion = Diffusion(beta_schedule("linear", 40, 1e-4, 0.3),  # abar_T = 0.0012
                          conditioning=conditioning, prediction=prediction)
    model = PointDenoiser()
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, 2000))
    data = tf.constant(swiss_roll(20000, 0))

    @tf.function
    def train_step(batch, seed):
        with tf.GradientTape() as tape:
            steps, noise = diffusion.training_noise(batch, seed)
            loss = diffusion.loss(diffusion.training_target(batch, steps, noise),
                                  model(diffusion.q_sample(batch, steps, noise), steps))
        optimizer.apply(tape.gradient(loss, model.trainable_variables),
                        model.trainable_variables)
        return loss

    dataset = tf.data.Dataset.from_tensor_slices(data).shuffle(20000, seed=0).repeat().batch(512)
    for step, batch in dataset.take(2000).enumerate():
        train_step(batch, [0, step])
    return diffusion, tf.function(lambda x, t: diffusion.eps_from_output(x, t, model(x, t)))


@pytest.fixture(scope="module")
def swiss_roll_denoiser():
    return train_swiss_roll("step")


@pytest.fixture(scope="module")
def continuous_swiss_roll_denoiser():
    """Trained on noise levels drawn uniformly between steps (WaveGrad)."""
    return train_swiss_roll("continuous")


# (plan, how many times closer to the data than Gaussian noise it must land): the full
# samplers 5x, the few-step ones 4x.
SWISS_ROLL_PLANS = {
    "ddpm": (lambda d: samplers.ddpm_plan(d), 5),
    "ddpm_beta": (lambda d: samplers.ddpm_plan(d, "beta"), 5),
    "ddim10": (lambda d: samplers.ddim_plan(d, 10), 5),
    "ddim10_eta1": (lambda d: samplers.ddim_plan(d, 10, eta=1.0), 4),
    # Fractional steps; without the interpolated step embedding this lands only 1.0x closer.
    "fast8": (lambda d: samplers.fast_plan(d, [1e-4, 0.01, 0.05, 0.15, 0.35, 0.6, 0.8, 0.95]), 4),
}


@pytest.fixture(scope="module")
def v_swiss_roll_denoiser():
    """Trained to predict v (Salimans & Ho 2022); sampled through eps_from_output."""
    return train_swiss_roll("step", "v")


@pytest.mark.parametrize("sampler", ["ddpm", "ddim10", "fast8"])
def test_v_prediction_trains_and_samples_through_the_same_math(v_swiss_roll_denoiser, sampler):
    diffusion, model = v_swiss_roll_denoiser
    make_plan, factor = SWISS_ROLL_PLANS[sampler]
    if sampler == "fast8":
        factor = 3  # measured 3.5x (eps: 6.3x): the few-step levels sit between v's steps
    samples = samplers.sample(make_plan(diffusion), model, [2000, 2],
                              samplers.batch_noise(3)).numpy()
    reference = swiss_roll(2000, 1)
    gaussian = np.random.default_rng(2).normal(size=(2000, 2)).astype(np.float32)
    assert np.isfinite(samples).all()
    assert sliced_wasserstein(samples, reference) * factor <= sliced_wasserstein(gaussian,
                                                                                 reference)


def test_v_is_the_target_and_gives_eps_back_at_any_level():
    diffusion = Diffusion(beta_schedule("linear", 50, 1e-4, 0.05), prediction="v")
    x0 = tf.random.stateless_normal([4, 30, 1], [1, 2]) * 0.1
    eps = tf.random.stateless_normal([4, 30, 1], [3, 4])
    steps = tf.constant([0.0, 7.5, 30.0, 49.0])
    x_t = diffusion.q_sample(x0, steps, eps)
    v = diffusion.training_target(x0, steps, eps)
    signal, noise = [rate.numpy()[:, None, None] for rate in diffusion.rates(steps)]
    np.testing.assert_allclose(v.numpy(), signal * eps.numpy() - noise * x0.numpy(), atol=1e-6)
    np.testing.assert_allclose(diffusion.eps_from_output(x_t, steps, v).numpy(), eps.numpy(),
                               atol=1e-5)
    eps_model = Diffusion(beta_schedule("linear", 50, 1e-4, 0.05))
    assert eps_model.training_target(x0, steps, eps) is eps
    with pytest.raises(params_lib.UserError, match="prediction"):
        Diffusion([0.1], prediction="x0")


def test_the_log_snr_schedule_spreads_the_datas_snr_evenly_in_db():
    import train
    params = params_lib.preset("cpu", beta_schedule="log_snr", snr_first_db=30.0,
                               snr_last_db=-25.0)
    diffusion = Diffusion.from_params(params)
    variance = params.target_rms ** 2
    snr_db = 10 * np.log10(variance * diffusion.alpha_bars64 / (1 - diffusion.alpha_bars64))
    np.testing.assert_allclose(snr_db, np.linspace(30, -25, params.noise_steps), atol=1e-9)
    assert (diffusion.betas64 > 0).all() and (diffusion.betas64 < 1).all()
    assert diffusion.terminal_snr(variance) == pytest.approx(10 ** -2.5)
    # Half the training steps above 0 dB, where the linear schedule has 13 of 200.
    linear = Diffusion.from_params(params_lib.preset("cpu"))
    above = lambda d: int((variance * d.alpha_bars64 / (1 - d.alpha_bars64) > 1).sum())  # noqa
    assert above(diffusion) > 80 and above(linear) < 20
    # The terminal-SNR check guards it as any schedule.
    train.check_schedule(diffusion, variance, allow_high_snr=False)
    loud_end = Diffusion.from_params(params_lib.preset("cpu", beta_schedule="log_snr",
                                                       snr_last_db=-5.0))
    with pytest.raises(params_lib.UserError, match="snr_last_db"):
        train.check_schedule(loud_end, variance, allow_high_snr=False)


@pytest.mark.parametrize("conditioning", ["step", "continuous"])
@pytest.mark.parametrize("sampler", SWISS_ROLL_PLANS)
def test_swiss_roll_trains_and_every_sampler_lands_close_to_the_data(request, conditioning,
                                                                      sampler):
    diffusion, model = request.getfixturevalue(
        "swiss_roll_denoiser" if conditioning == "step" else "continuous_swiss_roll_denoiser")
    make_plan, factor = SWISS_ROLL_PLANS[sampler]
    if conditioning == "continuous":
        # Measured 15.8x (ddpm), 7.7x (ddim10), 6.0x (eta 1) and 4.0x (fast8), against 16.8x,
        # 8.4x, 6.6x and 6.3x for step conditioning with the interpolated step embedding: the
        # continuum of levels is a harder task for this small denoiser, not a better one.
        factor = min(factor, 3.5)
    samples = samplers.sample(make_plan(diffusion), model, [2000, 2], samplers.batch_noise(3))
    samples = samples.numpy()
    reference = swiss_roll(2000, 1)
    gaussian = np.random.default_rng(2).normal(size=(2000, 2)).astype(np.float32)
    assert np.isfinite(samples).all()
    assert sliced_wasserstein(samples, reference) * factor <= sliced_wasserstein(gaussian,
                                                                                 reference)


@pytest.mark.parametrize("sampler", ["ddim10", "fast8", "ddpm"])
def test_langevin_correctors_do_not_make_the_swiss_roll_worse(swiss_roll_denoiser, sampler):
    diffusion, model = swiss_roll_denoiser
    plan = SWISS_ROLL_PLANS[sampler][0](diffusion)
    reference = swiss_roll(2000, 1)
    distances = {}
    for corrector_steps in (0, 1):
        samples = samplers.sample(plan, model, [2000, 2], samplers.batch_noise(3),
                                  corrector_steps=corrector_steps).numpy()
        assert np.isfinite(samples).all()
        distances[corrector_steps] = sliced_wasserstein(samples, reference)
    assert distances[1] <= 1.05 * distances[0]


def test_langevin_step_matches_its_closed_form(diffusion):
    t = tf.constant([10, 150])
    x = tf.random.stateless_normal([2, 50, 1], [3, 4])
    eps = tf.random.stateless_normal([2, 50, 1], [5, 6])
    noise = tf.random.stateless_normal([2, 50, 1], [1, 2])
    moved = diffusion.langevin_step(x, t, eps, noise, snr=0.2).numpy()
    sigma = np.sqrt(1 - diffusion.alpha_bars64[[10, 150]])[:, None, None]
    step = 2 * (1 - diffusion.betas64[[10, 150]])[:, None, None] * (0.2 * sigma) ** 2
    expected = x.numpy() + step * (-eps.numpy() / sigma) + np.sqrt(2 * step) * noise.numpy()
    np.testing.assert_allclose(moved, expected, rtol=1e-5, atol=1e-6)


def test_continuous_conditioning_draws_levels_between_neighbouring_steps():
    diffusion = Diffusion(beta_schedule("linear", 50, 1e-4, 0.05), conditioning="continuous")
    steps = diffusion.training_noise(tf.zeros([20000, 1]), [1, 2])[0].numpy()
    assert steps.min() > -1 and steps.max() <= 49
    fractions = steps - np.floor(steps)
    assert 0.45 < fractions.mean() < 0.55 and len(np.unique(np.round(fractions, 3))) > 900
    signal_rate, noise_rate = [rate.numpy() for rate in diffusion.rates(tf.constant(steps))]
    np.testing.assert_allclose(signal_rate ** 2 + noise_rate ** 2, 1, atol=1e-5)
    # sqrt(abar) of each level lies between its neighbouring steps' and is linear in the step.
    table = np.concatenate([[1.0], np.sqrt(diffusion.alpha_bars64)])
    expected = np.interp(steps + 1, np.arange(51), table)
    np.testing.assert_allclose(signal_rate, expected, atol=2e-6)
    # integer steps reproduce the training table exactly, sigma accurate near t = 0
    signal, noise = diffusion.rates(tf.constant([0.0, 7.0, 49.0]))
    np.testing.assert_allclose(noise.numpy(), np.sqrt(1 - diffusion.alpha_bars64[[0, 7, 49]]),
                               rtol=1e-5)
    np.testing.assert_allclose(signal.numpy(), np.sqrt(diffusion.alpha_bars64[[0, 7, 49]]),
                               rtol=1e-6)
