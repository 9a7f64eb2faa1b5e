"""Which sampler to use by default: quality and time of each on one trained model, on
bench/calibrate.py's protocol.

  python bench/samplers.py --model_dir=pretrained/soundtracks-cpu --yardstick=/tmp/yardstick \\
      --out=runs/samplers [--only=fast,ddim10]

For each sampler below, generate.py writes --clips x --seconds with the model's EMA weights (same
seed for all) into --out/NAME, and they are scored against YARDSTICK/reference. Prints one JSON
line per sampler (network calls per clip, generation seconds per audio second, the distances)
and appends it to --out/samplers.jsonl. A cascade's --model_dir runs the sampler at every stage
(its network calls are summed over the stages).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from calibrate import reference_features  # noqa: E402
from recipe import generate_and_score  # noqa: E402
from diffusion import generation  # noqa: E402
from network import checkpoints  # noqa: E402

# name -> (generate.py flags, network calls per generated clip)
SAMPLERS = {
    "fast6": (["--sampler=fast"], 6),
    "fast6+corrector": (["--sampler=fast", "--corrector_steps=1"], 12),
    "ddim10": (["--sampler=ddim", "--steps=10"], 10),
    "ddim10+corrector": (["--sampler=ddim", "--steps=10", "--corrector_steps=1"], 20),
    "ddim20": (["--sampler=ddim", "--steps=20"], 20),
    "ddim50": (["--sampler=ddim", "--steps=50"], 50),
    "ddpm": (["--sampler=ddpm"], None),  # T calls
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--yardstick", required=True, help="bench/calibrate.py's --out")
    parser.add_argument("--out", default="runs/samplers")
    parser.add_argument("--only", default=",".join(SAMPLERS),
                        help=f"comma-separated, from {', '.join(SAMPLERS)}")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    names = args.only.split(",")
    unknown = sorted(set(names) - set(SAMPLERS))
    if unknown:
        sys.exit(f"error: --only: unknown samplers {unknown}; choose from {', '.join(SAMPLERS)}")
    folders = (generation.stage_dirs(args.model_dir) if generation.is_cascade(args.model_dir)
               else [args.model_dir])
    noise_steps = [checkpoints.load_params(folder).noise_steps for folder in folders]
    os.makedirs(args.out, exist_ok=True)
    reference = reference_features(args.yardstick)
    for name in names:
        generate_flags, calls = SAMPLERS[name]
        seconds, scores = generate_and_score(args.model_dir, os.path.join(args.out, name),
                                             args.yardstick, reference, args.clips, args.seconds,
                                             generate_flags)
        row = {"sampler": name, "flags": generate_flags, "model_dir": args.model_dir,
               "network_calls": sum(calls or steps for steps in noise_steps),
               "generate_s_per_audio_s": round(seconds / (args.clips * args.seconds), 3),
               **{key: round(value, 2) for key, value in scores.items()}}
        print(json.dumps(row), flush=True)
        with open(os.path.join(args.out, "samplers.jsonl"), "a") as file:
            file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
