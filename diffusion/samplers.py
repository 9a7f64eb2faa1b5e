"""Reverse-process samplers: ddpm, ddim and DiffWave's fast few-step sampler.

A sampler is a plan, a list of `Step`s; `sample` walks any plan from pure noise. Every update
is a formula of `diffusion.core`, so sampling uses exactly the math that training used. The
network is reached through `model(x_t, t)` (t float32 [batch], fractional for `fast`);
`denoiser` makes such a model from a DiffWave or `network.windowed`'s windowed one (any
length), with a label and guidance.
"""

import json
import os
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from diffusion.core import Diffusion, guided_eps
from params import UserError

SAMPLERS = ("fast", "ddim", "ddpm")
POSTERIOR_VARIANCES = ("beta_tilde", "beta")
FAST_SCHEDULE = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5)  # DiffWave's six-step inference betas


class Step(NamedTuple):
    """One network call and the update after it.

    network_step: the noise level the network is told, as a (fractional) training step.
    schedule, schedule_step: the Diffusion the update runs on and the step within it (for
      `fast`, a step of its short inference schedule).
    update: (x_t, schedule_step [batch], eps, noise) -> the less noisy x.
    """
    network_step: float
    schedule: Diffusion
    schedule_step: int
    update: Callable


def ddpm_plan(diffusion, posterior_variance="beta_tilde"):
    """Ancestral sampling over all T training steps; variance beta_tilde_t or beta_t."""
    update = lambda x, t, eps, noise: diffusion.reverse_step(  # noqa: E731
        x, t, eps, noise, posterior_variance)
    return [Step(float(t), diffusion, t, update) for t in reversed(range(diffusion.steps))]


def ddim_plan(diffusion, num_steps, eta=0.0):
    """DDIM (Song et al. 2021) on `num_steps` evenly spaced training steps; eta 0 is
    deterministic."""
    if not 1 <= num_steps <= diffusion.steps:
        raise UserError(f"--steps={num_steps}: ddim needs 1 to {diffusion.steps} steps (the "
                        "model's --noise_steps)")
    schedule = np.linspace(diffusion.steps - 1, 0, num_steps).round().astype(int)
    plan = []
    for t, t_previous in zip(schedule, list(schedule[1:]) + [-1]):
        def update(x, t_vector, eps, noise, t_previous=int(t_previous)):
            previous = tf.fill(tf.shape(t_vector), t_previous)
            return diffusion.ddim_step(x, t_vector, previous, eps, noise, eta)
        plan.append(Step(float(t), diffusion, int(t), update))
    return plan


def fast_plan(diffusion, betas=FAST_SCHEDULE, posterior_variance="beta_tilde"):
    """DiffWave's fast sampling (Kong et al. 2020, appendix B): ancestral steps on a short
    inference schedule `betas`, the network told the fractional training step of equal noise
    level."""
    betas = np.asarray(betas, np.float64)
    bad = [beta for beta in betas if not 0 < beta < 1]
    if len(betas) == 0 or bad:
        raise UserError(f"fast schedule {list(betas)}: every beta must lie in (0, 1)"
                        + (f"; {bad[0]} does not" if bad else ""))
    inference = Diffusion(betas)
    network_steps = diffusion.fractional_steps(inference.alpha_bars64)
    outside = np.flatnonzero(np.isnan(network_steps))
    if outside.size:
        index = outside[0]
        raise UserError(
            f"fast schedule beta {betas[index]} (step {index + 1} of {len(betas)}) brings the "
            f"cumulative abar to {inference.alpha_bars64[index]:.4g}, outside the trained range "
            f"[{diffusion.alpha_bars64[-1]:.4g}, {diffusion.alpha_bars64[0]:.4g}]; change or drop it")
    update = lambda x, s, eps, noise: inference.reverse_step(  # noqa: E731
        x, s, eps, noise, posterior_variance)
    return [Step(float(network_steps[s]), inference, s, update)
            for s in reversed(range(len(betas)))]


def schedule_path(model_dir, steps):
    """Where search_schedule.py keeps the fast schedule it found for `steps` steps."""
    return os.path.join(model_dir, "schedules", f"{steps}.json")


def load_schedule(model_dir, steps):
    """The betas search_schedule.py found for `steps`, or UserError when there are none."""
    path = schedule_path(model_dir, steps)
    try:
        with open(path) as f:
            betas = json.load(f)["betas"]
    except FileNotFoundError:
        raise UserError(f"no searched {steps}-step schedule ({path}); run search_schedule.py "
                        f"--model_dir={model_dir} --steps={steps} --reference=DIR, or give "
                        "--fast_schedule") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: cannot read the schedule ({error})") from None
    if len(betas) != steps:
        raise UserError(f"{path} holds {len(betas)} betas, not {steps}; search again")
    return [float(beta) for beta in betas]


def batch_noise(seed):
    """noise(index, shape): one random stream for the whole batch."""
    generator = tf.random.Generator.from_seed(seed)
    return lambda index, shape: generator.normal(shape)


def example_noise(seed, first_example, stage=0):
    """noise(index, shape) where example i of the batch draws from its own stream (seed,
    first_example + i): an example's audio does not depend on its batch size or batch-mates.
    Each `stage` of a cascade has streams of its own (0 for a single model)."""
    def noise(index, shape):
        return tf.stack([
            tf.random.stateless_normal(shape[1:], tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in([seed, stage], first_example + i),
                index))
            for i in range(shape[0])])
    return noise


def denoiser(network, label=None, no_label=None, guidance=1.0, inputs=None):
    """The samplers' model(x_t, t) from a network that takes named inputs (a DiffWave, or
    `network.windowed`'s windowed one): {"audio": x_t, "steps": t[, "labels"], **inputs} -> eps.

    label: for a labelled network (no_label, its "no label" index, given), the label's index
      (an int or an int32 scalar tensor), or None for the unconditional prediction; without
      no_label the network is called without labels.
    guidance: classifier-free guidance (a float, or a float32 scalar tensor); other than 1, the
      conditional and unconditional predictions come from one call on the batch twice over
      (`core.guided_eps`).
    inputs: the network's other inputs, fixed for every step (an upsampler's condition and its
      level), batch-first.
    """
    inputs = inputs or {}

    def model(x, t):
        if no_label is None:
            return network({**inputs, "audio": x, "steps": t})
        batch = tf.shape(x)[0]
        labels = tf.fill([batch], no_label if label is None else label)
        if label is None or (not tf.is_tensor(guidance) and guidance == 1):
            return network({**inputs, "audio": x, "steps": t, "labels": labels})
        twice = {name: tf.concat([value, value], 0) for name, value in inputs.items()}
        both = network({**twice, "audio": tf.concat([x, x], 0), "steps": tf.concat([t, t], 0),
                        "labels": tf.concat([labels, tf.fill([batch], no_label)], 0)})
        conditional, unconditional = tf.split(both, 2)
        return guided_eps(unconditional, conditional, guidance)
    return model


def from_audio(plan, diffusion, strength, data_variance):
    """SDEdit (Meng et al. 2022): the end of `plan` that a variation of given audio runs.

    `strength` (0 to 1) moves the starting noise level evenly in log signal-to-noise ratio for
    data of `data_variance`, from the first training step's (0) to the last's (1); the steps of
    the plan below that level are kept. (Evenly in training steps would bury music at RMS 0.1
    under noise 17 dB louder by a third of the way.) Strength 0 keeps no step (the audio comes
    back as it is), 1 the whole plan; `sample` with `start` noises the audio to the first kept
    step's level.
    """
    if not 0 <= strength <= 1:
        raise UserError(f"--strength={strength}: give a number from 0 (the input as it is) to 1 "
                        "(the input ignored)")
    if strength == 1:
        return list(plan)
    log_snr = np.log(diffusion.alpha_bars64 * data_variance / (1 - diffusion.alpha_bars64))
    target = log_snr[0] + strength * (log_snr[-1] - log_snr[0])
    level = np.interp(-target, -log_snr, np.arange(diffusion.steps))  # log_snr falls with t
    return [step for step in plan if step.network_step < level]


class Known(NamedTuple):
    """Audio the output must keep (continuation, inpainting).

    audio: float32 [1, time, 1], the clean audio (anything where `mask` is False).
    mask: bool [1, time, 1], True where the output is `audio`.
    """
    audio: tf.Tensor
    mask: tf.Tensor


def known(audio, first, end):
    """Known `audio` (float32 [time]) but for samples [first, end), which are drawn anew."""
    keep = np.ones(len(audio), bool)
    keep[first:end] = False
    return Known(tf.constant(np.asarray(audio, np.float32)[None, :, None]),
                 tf.constant(keep[None, :, None]))


def sample(plan, model, shape, noise, clip_x0=False, corrector_steps=0, corrector_snr=0.16,
           start=None, keep=None, resamplings=0):
    """Walks a plan from pure noise, or from `start` noised to the level of the plan's first step
    (SDEdit, with `from_audio`'s end of a plan); with `keep`, the known region is the given audio
    (RePaint, Lugmayr et al. 2022).

    Args:
      plan: list of Step (ddpm_plan, ddim_plan, fast_plan).
      model: (x_t, t float32 [batch]) -> predicted eps shaped like x_t.
      shape: the output shape, e.g. [batch, time, 1] or [batch, 2].
      noise: (index, shape) -> standard normal noise; index 0 draws x_T, k the noise of step k.
      clip_x0: clip each step's predicted x0 to [-1, 1].
      corrector_steps: Langevin corrector steps (`Diffusion.langevin_step`, signal-to-noise
        ratio `corrector_snr`) at each step's noise level before its update: predictor-corrector
        sampling, each corrector step one more network call.
      start: None (pure noise), or clean audio broadcastable to `shape`, noised with noise(0).
      keep: a `Known`: before each step the known region of x is replaced by the known audio
        noised to that step's level (fresh noise each step), so the rest is drawn to fit it;
        the output's known region is the known audio itself.
      resamplings: RePaint's resampling, with `keep`: each step is run 1 + `resamplings` times,
        its result noised back to the step's level between runs (`Diffusion.renoise`), which
        gives the drawn region more network calls to agree with the known one.
    Returns:
      float32 tensor of `shape`.
    """
    # Noise streams: block 0 holds x_T (0), the steps' (1..len(plan)) and the correctors';
    # the known region's and the resampling's noise and the runs after the first take later
    # blocks, so that without them every stream is what it always was.
    block = len(plan) * (1 + corrector_steps) + 1
    x = noise(0, shape)
    if start is not None and plan:
        first = plan[0]
        x = first.schedule.q_sample(tf.broadcast_to(start, shape),
                                    tf.fill([shape[0]], first.schedule_step), x)
    elif start is not None:  # no step to run: the audio as it is
        x = tf.broadcast_to(start, shape)
    # The abar each step's update brings x to: the next step's level, 1 (clean) after the last.
    reached = [step.schedule.alpha_bars64[step.schedule_step] for step in plan[1:]] + [1.0]
    for number, step in enumerate(plan, 1):
        t = tf.fill([shape[0]], tf.constant(step.schedule_step, tf.int32))
        network_steps = tf.fill([shape[0]], tf.constant(step.network_step, tf.float32))
        for run in range(1 + resamplings):
            streams = 3 * run * block  # this run's: step and corrector, known, resampling
            if keep is not None:
                x = tf.where(keep.mask, step.schedule.q_sample(
                    keep.audio, t, noise(streams + block + number, shape)), x)
            for corrector in range(corrector_steps):
                stream = streams + len(plan) + 1 + (number - 1) * corrector_steps + corrector
                x = step.schedule.langevin_step(x, t, model(x, network_steps),
                                                noise(stream, shape), corrector_snr)
            eps = model(x, network_steps)
            if clip_x0:
                eps = step.schedule.clip_x0(x, t, eps)
            x = step.update(x, t, eps, noise(streams + number, shape))
            if run < resamplings:
                x = step.schedule.renoise(x, reached[number - 1], step.schedule_step,
                                          noise(streams + 2 * block + number, shape))
    if keep is not None:
        x = tf.where(keep.mask, keep.audio, x)
    return x


def ddim(diffusion, model, shape, num_steps, seed=0, eta=0.0):
    """`num_steps` of DDIM from pure noise of `shape` (one random stream from `seed`)."""
    return sample(ddim_plan(diffusion, num_steps, eta), model, shape, batch_noise(seed))
