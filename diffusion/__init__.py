"""DDPM math shared by training and every sampler: schedules, forward process, loss, reverse step."""
