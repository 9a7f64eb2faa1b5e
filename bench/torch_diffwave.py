"""The PyTorch yardstick: a plain PyTorch CPU build of the same DiffWave, timed like ours.

  python bench/torch_diffwave.py --measure=train|forward [--preset=base]

A dev-only dependency (pip install torch==2.13.0, CPU build), not in requirements.txt. The
network is written the straightforward way (lmnt-com/diffwave's layer: one dilated convolution
to 2C channels split into the tanh and sigmoid halves, one 1x1 to 2C split into residual and
skip, (x + residual) / sqrt 2), with the shapes and parameter count of `network.DiffWave`.
train times forward, backward, global-norm clipping, Adam and an EMA update on batch
--batch x --samples, like bench/train.py; forward the median of one evaluation on
1 x --forward_samples, like bench/generate.py. Prints one JSON line.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import params as params_lib  # noqa: E402


def step_sinusoids(steps, channels=128):
    """[batch] -> [batch, channels], DiffWave's encoding (integer steps only here)."""
    half = channels // 2
    frequencies = 10.0 ** (torch.arange(half) * 4.0 / (half - 1))
    angles = steps[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResidualLayer(nn.Module):
    def __init__(self, channels, embedding, dilation):
        super().__init__()
        self.step_projection = nn.Linear(embedding, channels)
        self.dilated_conv = nn.Conv1d(channels, 2 * channels, 3, padding=dilation,
                                      dilation=dilation)
        self.output_projection = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x, embedding):
        """x: [batch, C, time]; embedding: [batch, E] -> ((x + residual) / sqrt 2, skip)."""
        y = self.dilated_conv(x + self.step_projection(embedding)[:, :, None])
        filter_half, gate_half = torch.chunk(y, 2, dim=1)
        y = self.output_projection(torch.tanh(filter_half) * torch.sigmoid(gate_half))
        residual, skip = torch.chunk(y, 2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class DiffWave(nn.Module):
    def __init__(self, params):
        super().__init__()
        channels, embedding = params.residual_channels, params.embedding_channels
        self.embedding = nn.Sequential(nn.Linear(128, embedding), nn.SiLU(),
                                       nn.Linear(embedding, embedding), nn.SiLU())
        self.input_projection = nn.Conv1d(1, channels, 1)
        self.layers = nn.ModuleList(
            ResidualLayer(channels, embedding, 2 ** (i % params.dilation_cycle))
            for i in range(params.residual_layers))
        self.skip_projection = nn.Conv1d(channels, channels, 1)
        self.output_projection = nn.Conv1d(channels, 1, 1)

    def forward(self, audio, steps):
        """audio: [batch, 1, time]; steps: [batch] -> predicted noise [batch, 1, time]."""
        embedding = self.embedding(step_sinusoids(steps))
        x = torch.relu(self.input_projection(audio))
        skips = 0
        for layer in self.layers:
            x, skip = layer(x, embedding)
            skips = skips + skip
        x = torch.relu(self.skip_projection(skips / math.sqrt(len(self.layers))))
        return self.output_projection(x)


def time_training(model, batch, samples, warmup, steps):
    """Training steps per second on a fixed random batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    ema = [p.detach().clone() for p in model.parameters()]
    clean = 0.1 * torch.randn(batch, 1, samples)

    def step():
        t = torch.randint(0, 50, (batch,))
        noise = torch.randn_like(clean)
        abar = torch.rand(batch, 1, 1)
        noisy = abar.sqrt() * clean + (1 - abar).sqrt() * noise
        loss = torch.mean((model(noisy, t.float()) - noise) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1e9)
        optimizer.step()
        with torch.no_grad():
            for average, p in zip(ema, model.parameters()):
                average.lerp_(p, 1 - 0.999)
        return float(loss)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def forward_ms(model, samples, repeats=10):
    """Median milliseconds of one evaluation on [1, 1, samples], after a warm-up."""
    audio, steps = torch.randn(1, 1, samples), torch.tensor([10.0])
    times = []
    with torch.inference_mode():
        model(audio, steps)
        for _ in range(repeats):
            start = time.perf_counter()
            model(audio, steps)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", choices=("train", "forward"), required=True)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--samples", type=int, default=16000)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--forward_samples", type=int, default=7350)
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    model = DiffWave(params_lib.preset(args.preset))
    result = {"framework": f"PyTorch {torch.__version__}", "threads": torch.get_num_threads(),
              "parameters": sum(p.numel() for p in model.parameters())}
    if args.measure == "train":
        result["steps_per_s"] = round(time_training(model, args.batch, args.samples,
                                                    args.warmup, args.steps), 3)
        result["batch"] = [args.batch, args.samples]
    else:
        model.eval()
        result["forward_ms"] = round(forward_ms(model, args.forward_samples), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
