"""Generation as a library of values, not flags: a trained model with its sampler plan and
windowing (a `Stage`) generates a batch. generate.py, export.py, search_schedule.py and the
bench scripts call it instead of each loading, windowing, guiding and sampling on its own.
"""

from diffusion import samplers
from diffusion.core import Diffusion
from network import checkpoints
from network.windowed import windowed_network
from params import UserError

DEFAULT_WINDOW = 65536  # samples per network call: bounds memory, not the length


def make_plan(params, sampler="fast", steps=None, fast_schedule=samplers.FAST_SCHEDULE,
              variance="beta_tilde", eta=0.0, model_dir=None):
    """The plan of `sampler` for a model of `params`.

    steps: ddim's step count (default params.sample_steps); for fast, the schedule that
      search_schedule.py found for this many steps in model_dir (fast_schedule is then unused).
    UserError for settings that do not fit the sampler.
    """
    diffusion = Diffusion.from_params(params)
    if sampler == "ddpm":
        if steps is not None:
            raise UserError(f"--steps applies to ddim and fast; ddpm takes all "
                            f"{diffusion.steps} training steps")
        return samplers.ddpm_plan(diffusion, variance)
    if sampler == "ddim":
        return samplers.ddim_plan(diffusion, params.sample_steps if steps is None else steps,
                                  eta)
    if steps is not None:
        return samplers.fast_plan(diffusion, samplers.load_schedule(model_dir, steps), variance)
    return samplers.fast_plan(diffusion, fast_schedule, variance)


class Stage:
    """A trained DiffWave ready to generate at its rate.

    params: its Params; network: the DiffWave (EMA weights as loaded); plan: the sampler's
    steps (`make_plan`); window: samples per network call (`network.windowed`); checkpoint: the
    path it was loaded from. `on_window`, when set, is called after every window of every
    network call (a progress bar).
    """

    def __init__(self, params, network, plan=None, window=DEFAULT_WINDOW, jit=False,
                 checkpoint=None):
        self.params, self.network, self.checkpoint = params, network, checkpoint
        self.plan = make_plan(params) if plan is None else plan
        self.window = window
        self.on_window = None
        # One windowed network for every call: its graphs are traced once.
        self.windowed = windowed_network(network, window, self._window_done, jit)

    @classmethod
    def load(cls, model_dir, checkpoint=None, ema=True, dilated_conv="direct", **options):
        """The Stage of model_dir's latest checkpoint (or `checkpoint`); `options` as
        Stage()'s. UserError when it cannot be loaded."""
        params = checkpoints.load_params(model_dir)
        network, found = checkpoints.load_latest(params, model_dir, checkpoint, ema,
                                                 dilated_conv)
        return cls(params, network, checkpoint=found, **options)

    def _window_done(self, *progress):
        if self.on_window:
            self.on_window(*progress)

    @property
    def sample_rate(self):
        return self.params.sample_rate

    @property
    def diffusion(self):
        return Diffusion.from_params(self.params)

    def denoiser(self, label=None, guidance=1.0):
        """The samplers' model(x_t, t): windowed, with `label` (an index into
        params.label_names, or None) and classifier-free `guidance` for a labelled model."""
        no_label = self.network.no_label if label is not None else None
        return samplers.denoiser(self.windowed, label, no_label, guidance)

    def generate(self, count, samples, seed=0, first_example=0, label=None, guidance=1.0,
                 plan=None, **options):
        """Clips `first_example` .. `first_example + count - 1` of `seed`: each depends only on
        (seed, its number), not on the batch it is generated in.

        plan: instead of the Stage's own (a variation's end of it, a searched schedule);
        options: samplers.sample's (clip_x0, corrector_steps, corrector_snr, start, keep,
        resamplings).
        Returns float32 [count, samples, 1] at the model rate.
        """
        return samplers.sample(self.plan if plan is None else plan,
                               self.denoiser(label, guidance), [count, samples, 1],
                               samplers.example_noise(seed, first_example), **options)
