"""Draws the README's figures into images/. Needs matplotlib (not a project dependency):

  pip install matplotlib && python images/make_figures.py [--curves=MODEL_DIR]
      [--recipe=runs/recipe/recipe.jsonl --run=c48l10 --yardstick=/tmp/yardstick]
      [--core_hours=bench/core_hours.jsonl --yardstick=/tmp/yardstick_7350]
      [--generated=FOLDER --real=FOLDER] [--variations LABEL=FILE ...]
      [--continuation LABEL=FILE ... --seam=SECONDS]

--curves (a train.py --model_dir) adds its loss curves; --recipe the distances of one
bench/recipe.py run over its training steps, against the calibration rows of
bench/calibrate.py's --yardstick; --core_hours each model's distances over the CPU time it
trained; --generated and --real spectrograms of generated clips beside
real ones; --variations spectrograms of variations of one clip; --continuation spectrograms of
continuations of one prompt, its end (--seam) marked.
"""

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import soundfile  # noqa: E402

import params as params_lib  # noqa: E402
from data import lowpass, pipeline, synthetic  # noqa: E402
from network import DiffWave  # noqa: E402


def lowpass_figure(params, path):
    taps = pipeline.model_lowpass(params)
    frequencies, response = scipy.signal.freqz(taps, worN=1 << 15, fs=params.input_rate)
    gain_db = 20 * np.log10(np.maximum(np.abs(response), 1e-12))
    fig, (full, passband) = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis in (full, passband):
        axis.plot(frequencies, gain_db)
        axis.axvline(params.sample_rate / 2, color="r", ls="--", label="new Nyquist")
        axis.set_xlabel("Hz")
        axis.grid(alpha=0.3)
    full.axhline(-60, color="k", ls=":", label="-60 dB requirement")
    full.set_ylim(-120, 5)
    full.set_ylabel("gain (dB)")
    full.set_title(f"Anti-aliasing low-pass, {len(taps)} taps")
    full.legend(loc="lower left")
    edge = pipeline.model_passband_edge(params)
    passband.set_xlim(0, edge)
    passband.set_ylim(-0.02, 0.02)
    passband.set_title(f"Passband (to {edge:.0f} Hz): ripple in dB")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def tones_figure(params, path):
    rate = params.input_rate
    fig, axes = plt.subplots(1, 4, figsize=(12, 3), sharey=True)
    for index, axis in enumerate(axes):
        audio, spec = synthetic.harmonic_tone(params.synthetic_seed, index, rate, rate,
                                              pipeline.model_passband_edge(params))
        axis.specgram(audio, NFFT=1024, Fs=rate, noverlap=768, cmap="magma")
        axis.set_ylim(0, params.sample_rate / 2)
        axis.set_title(f"MIDI {spec.midi_pitch}, {len(spec.partial_frequencies)} partials")
        axis.set_xlabel("s")
    axes[0].set_ylabel("Hz")
    fig.suptitle("Built-in tones (first four of the dataset)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def architecture_figure(params, path):
    """DiffWave as a stack of boxes, bottom (input) to top (output)."""
    boxes = [
        ("x_t  [batch, time, 1]", "#dddddd"),
        ("1x1 conv to C, ReLU", "#cfe2f3"),
        (f"residual layer i = 0..{params.residual_layers - 1}:\n"
         "x + Dense(step embedding)  ->  dilated conv k=3, d = 2^(i mod "
         f"{params.dilation_cycle}), to 2C\n"
         "tanh(first C) * sigmoid(second C)  ->  1x1 conv to 2C = residual | skip\n"
         "x <- (x + residual) / sqrt(2)", "#fce5cd"),
        (f"sum of skips / sqrt({params.residual_layers}), ReLU", "#d9ead3"),
        ("1x1 conv, ReLU", "#cfe2f3"),
        ("1x1 conv to 1 (zero-initialised)  ->  predicted noise [batch, time, 1]", "#dddddd"),
    ]
    fig, axis = plt.subplots(figsize=(8, 6.5))
    heights = [0.6, 0.6, 1.6, 0.6, 0.6, 0.6]
    y = 0.2
    centres = []
    for (text, colour), height in zip(boxes, heights):
        axis.add_patch(matplotlib.patches.FancyBboxPatch(
            (0.05, y), 0.7, height, boxstyle="round,pad=0.02", fc=colour, ec="k"))
        axis.text(0.4, y + height / 2, text, ha="center", va="center", fontsize=8.5)
        centres.append((y, y + height))
        y += height + 0.35
    for (_, top), (bottom, _) in zip(centres, centres[1:]):
        axis.annotate("", (0.4, bottom - 0.02), (0.4, top + 0.02),
                      arrowprops={"arrowstyle": "->"})
    step_y = centres[2][0] + heights[2] / 2
    axis.add_patch(matplotlib.patches.FancyBboxPatch(
        (0.8, step_y - 0.5), 0.18, 1.0, boxstyle="round,pad=0.02", fc="#ead1dc", ec="k"))
    axis.text(0.89, step_y, f"step t\n128 sinusoids\nDense {params.embedding_channels}"
              f"\nswish\nDense {params.embedding_channels}\nswish", ha="center",
              va="center", fontsize=8)
    axis.annotate("", (0.77, step_y), (0.8, step_y), arrowprops={"arrowstyle": "->"})
    axis.set_xlim(0, 1)
    axis.set_ylim(0, y)
    axis.axis("off")
    axis.set_title(f"DiffWave, base preset: C={params.residual_channels}, "
                   f"L={params.residual_layers}, receptive field "
                   f"{DiffWave(params).receptive_field} samples")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def curves_figure(model_dir, path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    import tensorflow as tf
    events = EventAccumulator(model_dir, size_guidance={"tensors": 0})
    events.Reload()
    fig, axis = plt.subplots(figsize=(7, 3.5))
    for tag in ("train/loss", "val/loss"):
        points = events.Tensors(tag)
        axis.plot([p.step for p in points],
                  [float(tf.make_ndarray(p.tensor_proto)) for p in points], label=tag)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("noise-prediction MSE")
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(f"Training curves: {os.path.basename(os.path.normpath(model_dir))}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


CALIBRATION_ROWS = {"heldout": "held-out music (floor)", "train_20db": "music + noise, 20 dB SNR",
                    "train_10db": "music + noise, 10 dB SNR",
                    "shaped_noise": "noise shaped like music", "white_noise": "white noise"}


def distances_figure(recipe_path, run, yardstick, path):
    """The distances of one recipe run's rows (one per scoring) over its steps, with the
    calibration rows as horizontal lines."""
    with open(recipe_path) as file:
        rows = [row for row in map(json.loads, file) if row["name"] == run]
    calibrated_figure({f"generated ({run}, fast sampler)": [(row["steps"], row) for row in rows]},
                      yardstick, "training step",
                      "Distance to held-out music (32 x 10 s; lower is closer)", path)


def core_hours_figure(rows_path, yardstick, path):
    """The distances at 7350 Hz of each model of rows_path (JSON lines: model, core_hours and
    the distances) over the CPU time it trained, with the calibration rows as lines."""
    with open(rows_path) as file:
        rows = [json.loads(line) for line in file if line.strip()]
    curves = {}
    for row in rows:
        curves.setdefault(row["model"], []).append((row["core_hours"], row))
    calibrated_figure(curves, yardstick,
                      "core-hours of training (CPU time of the stages up to 7350 Hz)",
                      "Distance to held-out music at 7350 Hz (32 x 10 s, fast; lower is closer)",
                      path)


def calibrated_figure(curves, yardstick, xlabel, title, path):
    """Three panels (frechet_mel, frechet_mfcc, kid): each curve ({label: [(x, row)]}, rows
    holding the distances) over x, and bench/calibrate.py's `yardstick` rows as lines."""
    with open(os.path.join(yardstick, "calibration.jsonl")) as file:
        calibration = {row["row"]: row for row in map(json.loads, file)}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(CALIBRATION_ROWS)))
    for axis, key in zip(axes, ("frechet_mel", "frechet_mfcc", "kid")):
        for number, (label, points) in enumerate(curves.items()):
            points = sorted(points, key=lambda point: point[0])
            axis.plot([x for x, _ in points], [row[key] for _, row in points], "o-",
                      color=f"C{number + 3}", label=label)
        for color, (name, label) in zip(colors, CALIBRATION_ROWS.items()):
            axis.axhline(calibration[name][key], color=color, ls="--", lw=1, label=label)
        axis.set_yscale("log")
        axis.set_xlabel(xlabel)
        axis.set_title(key)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def spectrograms_figure(generated, real, path, count=3, rate=params_lib.BASE.sample_rate):
    """The first `count` clips of each folder (at the model rate) as spectrograms, in two rows."""
    fig, axes = plt.subplots(2, count, figsize=(4 * count, 5.5), sharex=True, sharey=True)
    for row, (folder, label) in enumerate([(generated, "generated"), (real, "real, held out")]):
        for axis, file in zip(axes[row], sorted(glob.glob(os.path.join(folder, "*.wav")))):
            audio, file_rate = soundfile.read(file, dtype="float32")
            assert file_rate == rate, f"{file}: {file_rate} Hz, expected {rate}"
            axis.specgram(audio, NFFT=512, Fs=rate, noverlap=384, cmap="magma", vmin=-120,
                          vmax=-30)  # one colour scale for every panel
            axis.set_title(f"{label}: {os.path.basename(file)}", fontsize=9)
        axes[row][0].set_ylabel("Hz")
    for axis in axes[1]:
        axis.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=90, pil_kwargs={"quality": 85})


def side_by_side_figure(labelled_files, path, seam=None, rate=params_lib.BASE.sample_rate):
    """Spectrograms of clips at the model rate side by side: `labelled_files` [(label, file)];
    a dashed line at `seam` seconds."""
    fig, axes = plt.subplots(1, len(labelled_files), figsize=(4 * len(labelled_files), 3.2),
                             sharey=True)
    for axis, (label, file) in zip(axes, labelled_files):
        audio, file_rate = soundfile.read(file, dtype="float32")
        assert file_rate == rate, f"{file}: {file_rate} Hz, expected {rate}"
        axis.specgram(audio, NFFT=512, Fs=rate, noverlap=384, cmap="magma", vmin=-120, vmax=-30)
        if seam is not None:
            axis.axvline(seam, color="white", linestyle="--", linewidth=1)
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("s")
    axes[0].set_ylabel("Hz")
    fig.tight_layout()
    fig.savefig(path, dpi=90, pil_kwargs={"quality": 85})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", help="a train.py --model_dir: its loss curves")
    parser.add_argument("--recipe", help="a bench/recipe.py recipe.jsonl")
    parser.add_argument("--run", help="the run of --recipe to draw")
    parser.add_argument("--yardstick", help="bench/calibrate.py's --out")
    parser.add_argument("--core_hours", help="JSON lines of distances over core-hours "
                        "(bench/core_hours.jsonl), drawn against --yardstick's rows (7350 Hz)")
    parser.add_argument("--generated", help="a folder of generated clips")
    parser.add_argument("--real", help="a folder of real clips at the model rate")
    parser.add_argument("--rate", type=int, default=params_lib.BASE.sample_rate,
                        help="the rate of --generated and --real")
    parser.add_argument("--name", default="generated_vs_real.jpg",
                        help="the file --generated and --real are drawn into")
    parser.add_argument("--variations", nargs="+", metavar="LABEL=FILE",
                        help="clips at the model rate to draw side by side (generate.py "
                        "--init_audio at several --strength, 0 the input as the model hears it)")
    parser.add_argument("--continuation", nargs="+", metavar="LABEL=FILE",
                        help="clips at the model rate that continue one prompt (and the real "
                        "continuation), drawn side by side")
    parser.add_argument("--seam", type=float, help="where --continuation's prompt ends (s)")
    args = parser.parse_args()
    params = params_lib.preset("base")
    here = os.path.dirname(os.path.abspath(__file__))
    lowpass_figure(params, os.path.join(here, "lowpass_response.png"))
    tones_figure(params, os.path.join(here, "builtin_tones.png"))
    architecture_figure(params, os.path.join(here, "diffwave.png"))
    if args.curves:
        curves_figure(args.curves, os.path.join(here, "training_curves.png"))
    if args.recipe:
        distances_figure(args.recipe, args.run, args.yardstick,
                         os.path.join(here, "distances_over_training.png"))
    if args.core_hours:
        core_hours_figure(args.core_hours, args.yardstick,
                          os.path.join(here, "distances_over_core_hours.png"))
    if args.generated:
        spectrograms_figure(args.generated, args.real, os.path.join(here, args.name),
                            rate=args.rate)
    if args.variations:
        side_by_side_figure([item.rsplit("=", 1) for item in args.variations],
                            os.path.join(here, "variations.jpg"))
    if args.continuation:
        side_by_side_figure([item.rsplit("=", 1) for item in args.continuation],
                            os.path.join(here, "continuation.jpg"), args.seam)
