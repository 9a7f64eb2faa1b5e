"""Reverse-process samplers. Each calls `model(x_t, t)` (t float32 [batch]) and the step
formulas in `diffusion.core`, so sampling uses exactly the math that training used."""

import numpy as np
import tensorflow as tf


def _step_indices(t, batch):
    return tf.fill([batch], tf.constant(t, tf.int32))


def ddpm(diffusion, model, shape, seed=0, variance="beta_tilde"):
    """Ancestral sampling over all T steps, from pure noise.

    Args:
      shape: the output shape, e.g. [batch, time, 1] or [batch, 2].
      variance: "beta_tilde" (posterior) or "beta".
    Returns:
      float32 tensor of `shape`.
    """
    generator = tf.random.Generator.from_seed(seed)
    x = generator.normal(shape)
    for t in reversed(range(diffusion.steps)):
        steps = _step_indices(t, shape[0])
        eps = model(x, tf.cast(steps, tf.float32))
        x = diffusion.reverse_step(x, steps, eps, generator.normal(shape), variance)
    return x


def ddim(diffusion, model, shape, num_steps, seed=0, eta=0.0):
    """DDIM (Song et al. 2021) on `num_steps` evenly spaced steps of the T training steps."""
    generator = tf.random.Generator.from_seed(seed)
    x = generator.normal(shape)
    schedule = np.linspace(diffusion.steps - 1, 0, num_steps).round().astype(int)
    for t, t_previous in zip(schedule, list(schedule[1:]) + [-1]):
        steps = _step_indices(t, shape[0])
        eps = model(x, tf.cast(steps, tf.float32))
        x = diffusion.ddim_step(x, steps, _step_indices(t_previous, shape[0]), eps,
                                generator.normal(shape), eta)
    return x
