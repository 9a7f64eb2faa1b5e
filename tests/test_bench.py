"""The bench scripts still run the project's code (a change to the model's inputs once broke
bench/train.py unnoticed): each on the tiny network, its JSON line checked."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run, tone, write_audio


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


def test_a_recipe_row_trains_scores_at_the_band_and_logs_its_distances_for_hparams(tmp_path):
    """data/soundtracks.py's split, calibrate.py at 2450 Hz and recipe.py on a few tones laid
    out as data/soundtracks.py writes music: the row's JSON line, its line in recipe.jsonl, and its
    distances as scalars beside the params train.py logs (what the HParams dashboard reads)."""
    music, rows = tmp_path / "music", ["clip\tsoundtrack\ttrack"]
    for number in range(8):
        soundtrack, track = f"s{number % 2}", f"t{number // 2 % 2}"
        clip = f"{soundtrack}/{track}_{number}.wav"
        write_audio(str(music / clip), tone(3.0, 22050, 110.0 * (1 + number), 0.3), 22050)
        rows.append(f"{clip}\t{soundtrack}\t{track}")
    (music / "tracks.tsv").write_text("\n".join(rows) + "\n")
    split = run("-m", "data.soundtracks", str(music), "--split_only", "--heldout_share=0.5")
    assert split.returncode == 0, split.stderr
    assert json.loads(split.stdout)["heldout_clips"] == 4  # one track of each soundtrack
    yardstick = tmp_path / "yardstick"
    calibrated = run("bench/calibrate.py", f"--split={music / 'split'}", f"--out={yardstick}",
                     "--clips=2", "--seconds=1", "--rate=2450")
    assert calibrated.returncode == 0, calibrated.stderr[-2000:]
    row = last_json(run("bench/recipe.py", "--name=r", "--cpu_minutes=5",
                        f"--split={music / 'split'}", f"--yardstick={yardstick}",
                        f"--runs={tmp_path / 'runs'}", "--preset=tiny", "--clips=2",
                        "--seconds=1", "--", "--decimation=9", "--residual_layers=2",
                        "--max_steps=3", "--checkpoint_every=3",
                        env_extra={"TF_ENABLE_ONEDNN_OPTS": "0"}))  # no kernel probes
    assert row["steps"] == 3 and row["params"]["residual_layers"] == 2
    assert 0 < row["train_cpu_s"] < 300 and row["frechet_mel"] > 0
    logged = json.loads((tmp_path / "runs" / "recipe.jsonl").read_text().splitlines()[-1])
    assert logged == row
    events = EventAccumulator(str(tmp_path / "runs" / "r"), size_guidance={"tensors": 0})
    events.Reload()
    assert "_hparams_/session_start_info" in events.Tags()["tensors"]
    for key in ("frechet_mel", "frechet_mfcc", "kid"):
        [point] = events.Tensors(f"yardstick/{key}")
        assert point.step == 3
        np.testing.assert_allclose(tf.make_ndarray(point.tensor_proto), row[key], rtol=1e-6)
    # A stage scored elsewhere (an upsampler): --no_score resumes, trains, adds up its CPU time.
    more = last_json(run("bench/recipe.py", "--name=r", "--cpu_minutes=5", "--no_score",
                         f"--split={music / 'split'}", f"--runs={tmp_path / 'runs'}",
                         "--preset=tiny", "--", "--decimation=9", "--residual_layers=2",
                         "--max_steps=5", "--checkpoint_every=5",
                         env_extra={"TF_ENABLE_ONEDNN_OPTS": "0"}))
    assert more["steps"] == 5 and "frechet_mel" not in more
    assert more["train_cpu_s"] == pytest.approx(
        row["train_cpu_s"] + more["train_cpu_s_this_call"], abs=0.11)


def test_band_levels_tells_a_band_that_comes_and_goes_from_steady_noise_and_a_quiet_band(tmp_path):
    """bench/band_levels.py: a 5 kHz tone switched on and off over a low tone (the band moves
    by tens of dB from frame to frame) against the same tones with steady noise (it barely
    moves), the tone's level, in dB of the whole spectrum, where it was put, and the loudness of
    the whole signal switched by 21 dB moving where the steady one's does not."""
    rate = 22050
    time = np.arange(2 * rate) / rate
    low = 0.5 * np.sin(2 * np.pi * 200 * time)
    high = 0.05 * np.sin(2 * np.pi * 5000 * time)  # 20 dB under the low tone
    gate = (time % 0.5 < 0.25).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 0.01, time.shape)
    write_audio(str(tmp_path / "gated/a.wav"), (low + high * gate).astype(np.float32), rate)
    write_audio(str(tmp_path / "steady/a.wav"), (low + high + noise).astype(np.float32), rate)
    write_audio(str(tmp_path / "pulsed/a.wav"), ((low + high) * (0.1 + gate)).astype(np.float32),
                rate)
    done = run("bench/band_levels.py", *(str(tmp_path / name) for name in
                                         ("gated", "steady", "pulsed")), "--edges=0,1225,11025")
    assert done.returncode == 0, done.stderr[-2000:]
    gated, steady, pulsed = map(json.loads, done.stdout.strip().splitlines())
    assert gated["bands"]["1225-11025"]["frame_std_db"] > \
        10 * steady["bands"]["1225-11025"]["frame_std_db"]
    assert -21 < steady["bands"]["1225-11025"]["level_db"] < -19
    # The whole signal 21 dB louder half the time: its loudness moves, the steady one's not.
    assert pulsed["loudness_std_db"] > 8 > 0.5 > steady["loudness_std_db"]
