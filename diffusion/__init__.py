"""DDPM math shared by training and every sampler: schedules, forward process, loss, reverse step."""

from diffusion import samplers  # noqa: F401
from diffusion.core import SNR_REFUSE, SNR_WARN, Diffusion, beta_schedule  # noqa: F401
