"""An upsampler alone: from the real low band of held-out music to the upsampler's rate, scored
against the real audio. Prints one JSON line per row and appends them to OUT/upsampler.jsonl.

  python bench/upsampler.py --model_dir=runs/up7350 --yardstick=/tmp/yardstick_7350 \\
      --out=/tmp/upsampler [--levels=0,0.02,0.05] [--samplers=fast,ddim:25,ddpm] \\
      [--clips=32 --seconds=10]

The input is bench/calibrate.py's `heldout` set at the yardstick's band (32 x 10 s of held-out
tracks, the upsampler's rate; the first --clips, their first --seconds), each clip scaled so
that its low band has the training level (an upsampler's files get their gain on that band).
Rows:
  real            the clips themselves (what a perfect upsampler gives);
  low band        their low band alone, FIR-interpolated (nothing added above it);
  low band + shaped noise   plus noise with the training music's average spectrum above the
                  low band (bench/calibrate.py's shaped noise, high-passed), at its level;
  upsampled       the upsampler's output from the low band, with each of --samplers (SAMPLER
                  or SAMPLER:STEPS, as generate.py's --sampler and --steps) at each --levels
                  condition level, as generate.py gives it (Stage.post_filtered: band-limited,
                  its low band the condition's) and as the sampler drew it.
Each row gives the yardstick's distances against its `reference` (other held-out tracks), and
the log-spectral distance to the real clips (LSD, in dB, as NU-Wave reports it: per STFT frame
the RMS over frequency bins of the log-power difference, averaged over frames and clips) over
all bins (`lsd`) and over the bins above the low band (`lsd_high`).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import calibrate  # noqa: E402  (puts the project on sys.path)
from data import pipeline  # noqa: E402
from data.audio_files import decode_with_soundfile, find_audio_files  # noqa: E402
from diffusion import generation  # noqa: E402

FRAME, HOP = 2048, 512


def log_spectral_distance(generated, real, rate, above_hz=0.0):
    """LSD (dB) between two [clips, time] arrays, over STFT bins at or above `above_hz`."""
    window = np.hanning(FRAME)

    def log_power(audio):
        frames = np.lib.stride_tricks.sliding_window_view(audio, FRAME, axis=-1)[..., ::HOP, :]
        return np.log10(np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2 + 1e-10)
    bins = np.fft.rfftfreq(FRAME, 1 / rate) >= above_hz
    difference = 10 * (log_power(generated) - log_power(real))[..., bins]
    return float(np.mean(np.sqrt(np.mean(difference ** 2, axis=-1))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="an upsampler train.py wrote")
    parser.add_argument("--yardstick", required=True,
                        help="bench/calibrate.py's --out at the upsampler's rate")
    parser.add_argument("--out", required=True)
    parser.add_argument("--levels", default="0,0.02,0.05",
                        help="condition levels to upsample at, comma separated")
    parser.add_argument("--samplers", default="fast",
                        help="comma separated, each SAMPLER or SAMPLER:STEPS (fast:12, ddim:25)")
    parser.add_argument("--clips", type=int, default=None, help="the first CLIPS of the set")
    parser.add_argument("--seconds", type=float, default=None, help="the first SECONDS of each")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    stage = generation.Stage.load(args.model_dir)
    params, rate = stage.params, stage.sample_rate
    if not params.upsample_from:
        sys.exit(f"error: --model_dir={args.model_dir} is not an upsampler")
    if calibrate.band_of(args.yardstick) != rate:
        sys.exit(f"error: --yardstick is at {calibrate.band_of(args.yardstick)} Hz, the "
                 f"upsampler at {rate} Hz; give the yardstick of its rate")
    paths = sorted(find_audio_files(os.path.join(args.yardstick, "heldout")))
    real = np.stack([decode_with_soundfile(path, rate) for path in paths[:args.clips]])
    real = real[:, :None if args.seconds is None else round(args.seconds * rate)]
    low = pipeline.condition_of(real[..., None], params).numpy()[..., 0]
    scale = params.target_rms / np.sqrt(np.mean(low ** 2, axis=1, keepdims=True))
    real, low = real * scale, low * scale
    below = low[:, ::params.upsample_factor, None]  # on the low rate's grid: exact (band-limited)
    edge = params.upsample_from / 2
    train = np.stack([decode_with_soundfile(path, rate) for path in
                      sorted(find_audio_files(os.path.join(args.yardstick, "train")))])
    train = train[:, :real.shape[1]]
    train_high = train - pipeline.condition_of(train[..., None], params).numpy()[..., 0]
    noise = calibrate.shaped_noise(train_high, np.random.default_rng(0))[:len(real)]
    high_rms = np.sqrt(np.mean((real - low) ** 2))
    rows = {"real": real, "low band": low,
            "low band + shaped noise": low + noise * high_rms / np.sqrt(np.mean(noise ** 2))}
    seconds = {}
    runs = [(sampler, float(level)) for sampler in args.samplers.split(",")
            for level in args.levels.split(",")]
    for sampler, level in runs:
        name, _, steps = sampler.partition(":")
        stage.plan = generation.make_plan(params, name, int(steps) if steps else None,
                                          model_dir=args.model_dir)
        label = f"upsampled, {sampler}, level {level:g}"
        started = time.perf_counter()
        drawn = np.concatenate([
            stage.generate(len(part), real.shape[1], seed=0, first_example=first, below=part,
                           condition_level=level, post_filter=False).numpy()
            for first, part in ((first, below[first:first + args.batch])
                                for first in range(0, len(below), args.batch))])
        seconds[f"{label}, as drawn"] = time.perf_counter() - started
        rows[f"{label}, as drawn"] = drawn[..., 0]
        rows[label] = stage.post_filtered(
            drawn, stage.condition(below, real.shape[1])).numpy()[..., 0]
    reference = calibrate.reference_features(args.yardstick)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "upsampler.jsonl"), "a") as table:
        for name, clips in rows.items():
            folder = os.path.join(args.out, name.replace(" ", "_").replace(",", "")
                                  .replace("+", "plus").replace(":", ""))
            calibrate.write_set(folder, clips, rate)
            scores = calibrate.score_folder(folder, args.yardstick, reference)
            row = {"row": name, "model_dir": args.model_dir, "checkpoint": stage.checkpoint,
                   "rate": rate, "upsample_from": params.upsample_from,
                   "lsd": round(log_spectral_distance(clips, real, rate), 3),
                   "lsd_high": round(log_spectral_distance(clips, real, rate, edge), 3),
                   **scores}
            if name in seconds:
                row["s_per_audio_s"] = round(seconds[name] / (clips.size / rate), 3)
            line = json.dumps(row)
            print(line, flush=True)
            table.write(line + "\n")


if __name__ == "__main__":
    main()
