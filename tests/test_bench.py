"""The timing scripts bench/kernels.py runs still run the project's code (a change to the model's
inputs once broke bench/train.py unnoticed): each on the tiny network, its JSON line checked."""

import json

from conftest import run


def last_json(done):
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bench_train_times_steps_of_the_training_step():
    result = last_json(run("bench/train.py", "--preset=tiny", "--batch=2", "--samples=2000",
                           "--steps=1", "--warmup=1", "--kernels=stock", "--precision=float32"))
    assert result["steps_per_s"] > 0 and result["batch"] == [2, 2000]
    assert result["precision"] == "float32" and not result["onednn"]


def test_bench_generate_times_one_evaluation():
    result = last_json(run("bench/generate.py", "--preset=tiny", "--measure=forward",
                           "--forward_samples=2000", "--kernels=onednn"))
    assert result["forward_ms"] > 0 and result["onednn"]
