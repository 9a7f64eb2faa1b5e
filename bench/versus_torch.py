"""The project against a plain PyTorch CPU build of the same DiffWave, side by side in one run.

  python bench/versus_torch.py [--rounds=2] [--preset=base]

Runs, `--rounds` times interleaved (so that a noisy neighbour slows both alike), each in its own
process: bench/train.py and bench/torch_diffwave.py --measure=train (batch 4 x 16000),
bench/generate.py --measure=forward,fast6 and bench/torch_diffwave.py --measure=forward
(1 x 7350). Each project run chooses its kernels as train.py and generate.py do. Prints one
JSON line: every figure, the best of each, the ratios against the targets (training >= 1.5x,
forward >= 2x PyTorch, rtf_fast6 <= 0.5) and the machine. Needs torch (dev only).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"train_speedup": 1.5, "forward_speedup": 2.0, "rtf_fast6": 0.5}


def run(script, *args):
    """The JSON line a bench script prints (its last stdout line)."""
    done = subprocess.run([sys.executable, os.path.join(HERE, script), *args],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: {script} {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--preset", default="base")
    args = parser.parse_args()
    preset = f"--preset={args.preset}"
    figures = {"ours_train": [], "torch_train": [], "ours_forward": [], "torch_forward": [],
               "ours_rtf_fast6": []}
    machine = {}
    for _ in range(args.rounds):
        ours = run("train.py", preset)
        figures["ours_train"].append(ours["steps_per_s"])
        machine = {key: ours[key] for key in ("cpu", "cpu_flags", "matmul_peak_gflops")}
        machine["train"] = {key: ours[key] for key in ("onednn", "dilated_conv", "precision",
                                                       "gflops", "share_of_peak",
                                                       "peak_rss_mb")}
        figures["torch_train"].append(run("torch_diffwave.py", "--measure=train",
                                          preset)["steps_per_s"])
        ours = run("generate.py", preset, "--measure=forward,fast6")
        figures["ours_forward"].append(ours["forward_ms"])
        figures["ours_rtf_fast6"].append(ours["rtf_fast6"])
        machine["generate"] = {key: ours[key] for key in ("onednn", "dilated_conv", "gflops",
                                                          "matmul_peak_gflops")}
        torch = run("torch_diffwave.py", "--measure=forward", preset)
        figures["torch_forward"].append(torch["forward_ms"])
    best = {"ours_train": max(figures["ours_train"]), "torch_train": max(figures["torch_train"]),
            "ours_forward": min(figures["ours_forward"]),
            "torch_forward": min(figures["torch_forward"]),
            "ours_rtf_fast6": min(figures["ours_rtf_fast6"])}
    ratios = {"train_speedup": round(best["ours_train"] / best["torch_train"], 2),
              "forward_speedup": round(best["torch_forward"] / best["ours_forward"], 2),
              "rtf_fast6": best["ours_rtf_fast6"]}
    print(json.dumps({"preset": args.preset, "rounds": args.rounds, "figures": figures,
                      "best": best, "ratios": ratios, "targets": TARGETS,
                      "torch": torch["framework"], **machine}))


if __name__ == "__main__":
    main()
