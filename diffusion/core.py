"""DDPM math (Ho et al. 2020), shape-agnostic: x may be audio [batch, time, 1] or points
[batch, 2]. Steps t are 0-based: t = 0 is the first (least noisy) step, t = T - 1 the last.

  forward:   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   abar_t = prod_{s<=t} (1 - beta_s)
  posterior: q(x_{t-1} | x_t, x_0) = N(mean, beta_tilde_t),
             mean = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)
             beta_tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)

Schedules are computed in float64 numpy and used as float32 constants.
"""

import numpy as np
import tensorflow as tf

from params import BETA_SCHEDULES, PREDICTIONS, UserError

SNR_WARN = 0.01
SNR_REFUSE = 0.1


def beta_schedule(kind, steps, start, end):
    """beta_t for t = 0..steps-1, float64 [steps]."""
    if kind == "linear":
        return np.linspace(start, end, steps)
    if kind == "quadratic":
        return np.linspace(start ** 0.5, end ** 0.5, steps) ** 2
    if kind == "sigmoid":
        return start + (end - start) / (1 + np.exp(-np.linspace(-6, 6, steps)))
    if kind == "cosine":  # Nichol & Dhariwal 2021: abar follows a squared cosine
        offset = 0.008
        phase = (np.arange(steps + 1) / steps + offset) / (1 + offset) * np.pi / 2
        alpha_bar = np.cos(phase) ** 2
        return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], 0.999)
    raise UserError(f"unknown beta schedule {kind!r}; choose one of {BETA_SCHEDULES}")


def log_snr_betas(steps, first_db, last_db, data_variance):
    """beta_t, float64 [steps], whose signal-to-noise ratio for data of `data_variance`,
    var abar_t / (1 - abar_t), falls evenly in dB from `first_db` at t = 0 to `last_db` at
    t = T - 1: every step, and so every training draw of t, covers as much of the range of
    levels as any other, wherever the data's scale puts that range."""
    snr = 10.0 ** (np.linspace(first_db, last_db, steps) / 10) / data_variance
    alpha_bars = snr / (1 + snr)
    return 1 - alpha_bars / np.concatenate([[1.0], alpha_bars[:-1]])


def guided_eps(unconditional, conditional, scale):
    """Classifier-free guidance (Ho & Salimans 2022): eps_u + s (eps_c - eps_u); s = 1 is the
    conditional prediction, s > 1 pushes samples further towards what sets the label apart."""
    return unconditional + scale * (conditional - unconditional)


class Diffusion:
    """The noise schedule and every formula that uses it: one place for the math."""

    def __init__(self, betas, loss="l2", conditioning="step", prediction="eps"):
        betas = np.asarray(betas, np.float64)
        alphas = 1.0 - betas
        alpha_bars = np.cumprod(alphas)
        previous = np.concatenate([[1.0], alpha_bars[:-1]])
        self.steps = len(betas)
        self.loss_kind = loss
        self.conditioning = conditioning
        if prediction not in PREDICTIONS:
            raise UserError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")
        self.prediction = prediction
        self.betas64, self.alpha_bars64 = betas, alpha_bars
        constant = lambda values: tf.constant(values, tf.float32)  # noqa: E731
        self.betas = constant(betas)
        self.alpha_bars = constant(alpha_bars)
        self.signal_rates = constant(np.sqrt(alpha_bars))     # sqrt(abar_t)
        self.noise_rates = constant(np.sqrt(1 - alpha_bars))  # sqrt(1 - abar_t)
        self.posterior_variances = constant(betas * (1 - previous) / (1 - alpha_bars))
        self.eps_coefficients = constant(betas / np.sqrt(1 - alpha_bars))
        self.inverse_sqrt_alphas = constant(1 / np.sqrt(alphas))
        # 1 - sqrt(abar) at steps -1 (clean), 0, ..., T-1: interpolated for fractional steps;
        # kept as the deficit from 1 so sigma near t = 0 keeps float32's relative precision.
        self.signal_deficits = constant(np.concatenate([[0.0], 1 - np.sqrt(alpha_bars)]))

    @classmethod
    def from_params(cls, params):
        if params.beta_schedule == "log_snr":
            betas = log_snr_betas(params.noise_steps, params.snr_first_db, params.snr_last_db,
                                  params.target_rms ** 2)
        else:
            betas = beta_schedule(params.beta_schedule, params.noise_steps, params.beta_start,
                                  params.beta_end)
        return cls(betas, params.loss, params.noise_conditioning, params.prediction)

    def fractional_steps(self, alpha_bars):
        """The training steps, fractional, whose noise level sqrt(abar) matches each given abar.

        DiffWave's fast sampling runs a short inference schedule with a network trained on this
        one by feeding it the step, interpolated linearly in sqrt(abar), of equal noise level.
        Returns float64 [len(alpha_bars)], NaN where an abar lies outside the trained range.
        """
        trained = np.sqrt(self.alpha_bars64)  # decreasing in t
        wanted = np.sqrt(np.asarray(alpha_bars, np.float64))
        tolerance = 1e-9  # the first inference beta often equals the first trained one
        inside = (wanted <= trained[0] + tolerance) & (wanted >= trained[-1] - tolerance)
        steps = np.interp(-wanted, -trained, np.arange(self.steps, dtype=np.float64))
        return np.where(inside, steps, np.nan)

    def terminal_snr(self, data_variance):
        """abar_T var / (1 - abar_T): how much signal is left at the last step."""
        return self.alpha_bars64[-1] * data_variance / (1 - self.alpha_bars64[-1])

    @staticmethod
    def _broadcast(per_example, x):
        """A [batch] tensor shaped [batch, 1, ...] to broadcast against x."""
        return tf.reshape(per_example, tf.concat([tf.shape(per_example),
                                                  tf.ones([tf.rank(x) - 1], tf.int32)], 0))

    def _per_example(self, values, t, x):
        """values[t] shaped [batch, 1, ...] to broadcast against x."""
        return self._broadcast(tf.gather(values, t), x)

    def training_noise(self, x0, seed):
        """The randomness of one training batch from a stateless seed [2] (any int dtype).

        Returns (steps float32 [batch], eps shaped like x0): one uniform integer step t per
        example, or with continuous conditioning a step uniform in (t - 1, t], whose noise
        level sqrt(abar) is then uniform between those of t - 1 and t (see `rates`).
        """
        step_seed, offset_seed, noise_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3))
        batch = tf.shape(x0)[0]
        steps = tf.cast(tf.random.stateless_uniform([batch], step_seed, 0, self.steps, tf.int32),
                        tf.float32)
        if self.conditioning == "continuous":
            steps -= tf.random.stateless_uniform([batch], offset_seed)
        return steps, tf.random.stateless_normal(tf.shape(x0), noise_seed, dtype=x0.dtype)

    def rates(self, steps):
        """(sqrt(abar), sqrt(1 - abar)) at float steps in [-1, T - 1], each float32 [batch]:
        exact at integers, sqrt(abar) linear in between (as `fractional_steps` assumes); step
        -1 is the clean signal."""
        position = steps + 1
        low = tf.floor(position)
        weight = position - low
        low = tf.cast(low, tf.int32)
        high = tf.minimum(low + 1, self.steps)
        deficit = ((1 - weight) * tf.gather(self.signal_deficits, low)
                   + weight * tf.gather(self.signal_deficits, high))
        return 1 - deficit, tf.sqrt(deficit * (2 - deficit))

    def q_sample(self, x0, steps, noise):
        """x_t given x_0, steps [batch] (integers, or fractional levels, see `rates`) and eps
        (same shape as x0)."""
        signal_rate, noise_rate = self.rates(tf.cast(steps, tf.float32))
        return self._broadcast(signal_rate, x0) * x0 + self._broadcast(noise_rate, x0) * noise

    def noise_condition(self, condition, level, noise):
        """Conditioning augmentation (Cascaded Diffusion Models): an upsampler's condition
        noised by this forward process to `level`, float32 [batch], a fraction of the schedule
        (0 leaves it as it is, 1 is step T - 1); training and generation share it."""
        return self.q_sample(condition, tf.cast(level, tf.float32) * self.steps - 1, noise)

    def renoise(self, x, alpha_bar, t, noise):
        """x at noise level `alpha_bar` (a float; 1 is clean) brought forward to step t (an int,
        a higher noise level): q(x_t | x_s) = N(sqrt(abar_t / abar_s) x_s, 1 - abar_t / abar_s).
        RePaint's resampling."""
        ratio = self.alpha_bars64[t] / alpha_bar
        return np.float32(np.sqrt(ratio)) * x + np.float32(np.sqrt(1 - ratio)) * noise

    def training_target(self, x0, steps, noise):
        """What the network learns to output for x_t = q_sample(x0, steps, noise): eps, or
        with v-prediction (Salimans & Ho 2022) v = sqrt(abar) eps - sqrt(1 - abar) x0, which
        stays informative at both ends of the schedule. Shaped like x0."""
        if self.prediction == "eps":
            return noise
        signal_rate, noise_rate = self.rates(tf.cast(steps, tf.float32))
        return self._broadcast(signal_rate, x0) * noise - self._broadcast(noise_rate, x0) * x0

    def eps_from_output(self, x_t, steps, output):
        """The noise prediction from the network's output at float steps [batch] (the
        training schedule's, as the network is told): the output itself, or from v,
        eps = sqrt(1 - abar) x_t + sqrt(abar) v. Every sampler works from this eps."""
        if self.prediction == "eps":
            return output
        signal_rate, noise_rate = self.rates(tf.cast(steps, tf.float32))
        output = tf.cast(output, x_t.dtype)
        return self._broadcast(noise_rate, x_t) * x_t + self._broadcast(signal_rate, x_t) * output

    def loss(self, target, predicted):
        """Mean over every element of (target - output)^2, or |.| for l1: a scalar."""
        error = target - predicted
        return tf.reduce_mean(tf.abs(error) if self.loss_kind == "l1" else tf.square(error))

    def predict_x0(self, x_t, t, eps):
        return ((x_t - self._per_example(self.noise_rates, t, x_t) * eps)
                / self._per_example(self.signal_rates, t, x_t))

    def clip_x0(self, x_t, t, eps):
        """The eps that predicts x0 clipped to [-1, 1]: any step fed this eps uses the clipped
        x0 (for the posterior mean this equals writing it in x0 form)."""
        x0 = tf.clip_by_value(self.predict_x0(x_t, t, eps), -1.0, 1.0)
        return ((x_t - self._per_example(self.signal_rates, t, x_t) * x0)
                / self._per_example(self.noise_rates, t, x_t))

    def posterior_mean(self, x_t, t, eps):
        """Mean of p(x_{t-1} | x_t) from the noise prediction."""
        return self._per_example(self.inverse_sqrt_alphas, t, x_t) * (
            x_t - self._per_example(self.eps_coefficients, t, x_t) * eps)

    def posterior_variance(self, t, variance="beta_tilde"):
        """beta_tilde_t (the true posterior's) or beta_t (the upper bound): float32 [batch]."""
        return tf.gather(self.posterior_variances if variance == "beta_tilde" else self.betas, t)

    def reverse_step(self, x_t, t, eps, noise, variance="beta_tilde"):
        """One ancestral step x_t -> x_{t-1}; no noise is added at t = 0."""
        sigma = tf.sqrt(self.posterior_variance(t, variance))
        sigma = self._broadcast(tf.where(t > 0, sigma, tf.zeros_like(sigma)), x_t)
        return self.posterior_mean(x_t, t, eps) + sigma * noise

    def langevin_step(self, x_t, t, eps, noise, snr=0.16):
        """One Langevin corrector step at noise level t (Song et al. 2021, predictor-corrector
        sampling, VP form): x + step * score + sqrt(2 step) * noise, score = -eps / sigma_t,
        sigma_t = sqrt(1 - abar_t).

        Song et al. set step = 2 alpha_t (snr |noise| / |score|)^2 from the batch's norms. Here
        the norms are their expectations, |noise|^2 = d and |score|^2 = d / sigma_t^2, so
        step = 2 alpha_t (snr sigma_t)^2: the same size for every example (no dependence on
        batch-mates) and no blow-up where one example's score happens to be near zero.
        """
        sigma = self._per_example(self.noise_rates, t, x_t)
        step = 2 * self._per_example(1 - self.betas, t, x_t) * tf.square(snr * sigma)
        return x_t - step * eps / sigma + tf.sqrt(2 * step) * noise

    def ddim_step(self, x_t, t, t_previous, eps, noise, eta=0.0):
        """One DDIM step from t to an earlier t_previous (-1 means the clean signal).

        eta = 0 is deterministic; eta = 1 matches the ancestral sampler's variance.
        """
        alpha_bar = self._per_example(self.alpha_bars, t, x_t)
        previous = tf.where(t_previous >= 0, tf.gather(self.alpha_bars, tf.maximum(t_previous, 0)),
                            tf.ones_like(t_previous, tf.float32))
        previous = self._broadcast(previous, x_t)
        x0 = self.predict_x0(x_t, t, eps)
        sigma = eta * tf.sqrt((1 - previous) / (1 - alpha_bar) * (1 - alpha_bar / previous))
        direction = tf.sqrt(tf.maximum(1 - previous - sigma ** 2, 0.0)) * eps
        return tf.sqrt(previous) * x0 + direction + sigma * noise
