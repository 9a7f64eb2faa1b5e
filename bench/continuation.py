"""Continuations of held-out music on bench/calibrate.py's protocol: how they score against
held-out music, whether they follow their prompt, and whether the seam clicks.

  python bench/continuation.py --split=MUSIC/split --yardstick=/tmp/yardstick \
      --model_dir=pretrained/soundtracks-cpu --out=/tmp/continuation [--resamplings=0,2]

--clips excerpts of --prompt_seconds + --seconds are cut from the middle of clips of the held-out
tracks calibrate.py's `heldout` row uses (the model never saw them). For each --resamplings
value, generate.py continues every excerpt's first --prompt_seconds to the full length; rows:

  real         the excerpts' own continuation (the floor)
  pasted       the prompt followed by generate.py's clip without a prompt (a plain cut)
  continued_R  generate.py --prompt_audio --resamplings=R
  inpainted_R  generate.py --prompt_audio=EXCERPT --inpaint=P:P+2 --resamplings=R (the 2 s after
               the prompt redrawn): its two seams only, against the audio kept

Each row scores its --seconds after the prompt against YARDSTICK/reference (evaluate.py's
distances), `follows`: the fraction of clips whose continuation's mean log-mel spectrum is
nearer its own prompt's than the median of the other prompts' (one half by chance), and the seam
(`evaluate.seam_ratios` against the prompt: median and 90th percentile of the jump and the
spectral change; about 1 is like any moment of the prompt). Prints one JSON line per row.
"""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import soundfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibrate  # noqa: E402  (puts the project on sys.path)
import evaluate  # noqa: E402
import generate  # noqa: E402
from data.audio_files import write_wav  # noqa: E402

RATE = calibrate.ANALYSIS_RATE  # the single-rate model's


def follows(prompts, continuations):
    """The fraction of continuations nearer (mean log-mel, dB) their own prompt than the median
    other prompt."""
    def mean_mel(clip):
        return evaluate.clip_features(clip, RATE)[0].mean(axis=0)
    prompt_mels = np.array([mean_mel(prompt) for prompt in prompts])
    hits = []
    for index, clip in enumerate(continuations):
        distance = np.linalg.norm(prompt_mels - mean_mel(clip), axis=1)
        hits.append(distance[index] < np.median(np.delete(distance, index)))
    return float(np.mean(hits))


def score(name, prompts, clips, reference, seconds):
    """One row: the distances of the clips' part after the prompt, `follows`, the seams."""
    start = prompts.shape[1]
    after = clips[:, start:]
    side = evaluate.clips_features(after, RATE)
    seams = np.array([evaluate.seam_ratios(clip, start, prompt)
                      for clip, prompt in zip(clips, prompts)])
    return {"row": name, **{key: round(value, 4) for key, value in
                            evaluate.distances(side, reference).items()},
            "follows": round(follows(prompts, after), 3),
            "seam_jump": [round(float(np.percentile(seams[:, 0], q)), 2) for q in (50, 90)],
            "seam_spectral": [round(float(np.percentile(seams[:, 1], q)), 2) for q in (50, 90)],
            "clips": len(clips), "seconds": seconds}


def generated(folder, args, *flags):
    """generate.py's clips (seed 0) for these flags, run in this process: float32 [n, time]."""
    status = generate.main(["generate.py", f"--model_dir={args.model_dir}",
                            f"--output_dir={folder}", f"--sampler={args.sampler}", *flags])
    assert status == 0, f"generate.py {' '.join(flags)} failed"
    return np.array([soundfile.read(os.path.join(folder, name), dtype="float32")[0]
                     for name in sorted(os.listdir(folder))])


def inpainted(excerpts, first, resamplings, args):
    """The inpainting row: each excerpt's 2 s from sample `first` redrawn; its seams' ratios
    against the audio kept (median and 90th percentile over both seams of every clip)."""
    end = first + 2 * RATE
    seams = []
    for index in range(len(excerpts)):
        path = os.path.join(args.out, "real", f"{index:03d}.wav")
        [clip] = generated(os.path.join(args.out, f"inpainted_{resamplings}", str(index)), args,
                           f"--prompt_audio={path}", f"--inpaint={first / RATE}:{end / RATE}",
                           f"--resamplings={resamplings}")
        kept = np.concatenate([clip[:first], clip[end:]])
        seams += [evaluate.seam_ratios(clip, first, kept), evaluate.seam_ratios(clip, end, kept)]
    seams = np.array(seams)
    return {"row": f"inpainted_{resamplings}",
            "seam_jump": [round(float(np.percentile(seams[:, 0], q)), 2) for q in (50, 90)],
            "seam_spectral": [round(float(np.percentile(seams[:, 1], q)), 2) for q in (50, 90)],
            "clips": len(excerpts)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True,
                        help="data/soundtracks.py's split folder (MUSIC/split)")
    parser.add_argument("--yardstick", required=True, help="bench/calibrate.py's --out")
    parser.add_argument("--model_dir", default="pretrained/soundtracks-cpu")
    parser.add_argument("--out", required=True)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--prompt_seconds", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sampler", default="fast")
    parser.add_argument("--resamplings", default="0,2", help="comma-separated values to try")
    parser.add_argument("--rows", default="continued,inpainted",
                        help="which of the rows for each --resamplings to make")
    args = parser.parse_args()
    heldout = calibrate.tracks_of(os.path.join(args.split, "heldout"))
    keys = sorted(heldout, key=lambda key: hashlib.sha256(key.encode()).hexdigest())
    second_half = sum((heldout[key] for key in keys[1::2]), [])  # calibrate.py's `heldout` row
    excerpts = calibrate.excerpts(second_half, args.clips, args.prompt_seconds + args.seconds)
    prompt_samples = round(args.prompt_seconds * RATE)
    # As the model hears a file: brought to the training RMS (the continuations are too).
    excerpts *= 0.1 / np.sqrt(np.mean(np.square(excerpts[:, :prompt_samples]), axis=1,
                                      keepdims=True))
    excerpts = np.clip(excerpts, -1, 1)
    prompts = excerpts[:, :prompt_samples]
    calibrate.write_set(os.path.join(args.out, "real"), excerpts)  # for listening, figures
    reference = evaluate.folder_features(os.path.join(args.yardstick, "reference"), RATE)
    total = args.prompt_seconds + args.seconds
    rows = [score("real", prompts, excerpts, reference, args.seconds)]
    plain = generated(os.path.join(args.out, "plain"), args, f"--seconds={args.seconds}",
                      f"--num_samples={len(prompts)}")
    rows.append(score("pasted", prompts, np.concatenate([prompts, plain], axis=1), reference,
                      args.seconds))
    print(json.dumps(rows[0]), json.dumps(rows[1]), sep="\n", flush=True)
    for resamplings in (int(value) for value in args.resamplings.split(",")):
        if "inpainted" in args.rows:
            rows.append(inpainted(excerpts, prompt_samples, resamplings, args))
            print(json.dumps(rows[-1]), flush=True)
        if "continued" not in args.rows:
            continue
        clips, started = [], time.perf_counter()
        for index, prompt in enumerate(prompts):
            path = os.path.join(args.out, "prompts", f"{index:03d}.wav")
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                write_wav(path, prompt, RATE)
            clips.append(generated(os.path.join(args.out, f"continued_{resamplings}", str(index)),
                                   args, f"--prompt_audio={path}", f"--seconds={total}",
                                   f"--resamplings={resamplings}")[0])
        row = score(f"continued_{resamplings}", prompts, np.array(clips), reference,
                    args.seconds)
        row["seconds_per_clip"] = round((time.perf_counter() - started) / len(prompts), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(os.path.join(args.out, "continuation.jsonl"), "w") as table:
        table.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
