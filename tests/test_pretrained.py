"""The shipped pretrained models: the single-rate `cpu` preset and the three-stage cascade load,
and what they generate is finite, of the asked length at their top rate, and closer to real
music than white noise is."""

import json
import os

import numpy as np
import soundfile

import evaluate
import params as params_lib
from conftest import ROOT, TEST_MUSIC, command

PRETRAINED = os.path.join(ROOT, "pretrained", "soundtracks-cpu")


def test_the_shipped_model_is_the_cpu_preset():
    assert params_lib.Params.load(os.path.join(PRETRAINED, "params.json")) == \
        params_lib.preset("cpu")


def generates_music_like_clips(model_dir, tmp_path, rate, count=4):
    """generate.py on model_dir: `count` finite 2 s clips at `rate` Hz, not all alike, and
    scored like bench/calibrate.py against the committed real music (tests/music), closer to it
    than white noise is (a network with random or untrained weights gives noise, far above
    trained output on this distance)."""
    result = command("generate.py", f"--model_dir={model_dir}", f"--output_dir={tmp_path}",
                     "--seconds=2", f"--num_samples={count}", f"--batch_size={count}")
    assert result.returncode == 0, result.stderr
    paths = [line for line in result.stdout.splitlines() if line.endswith(".wav")]
    clips = [soundfile.read(path, dtype="float32") for path in paths]
    assert len(clips) == count
    for audio, clip_rate in clips:
        assert clip_rate == rate and audio.shape == (2 * rate,) and np.isfinite(audio).all()
    assert not np.array_equal(clips[0][0], clips[1][0])
    reference = evaluate.folder_features(TEST_MUSIC, rate)
    generated = evaluate.clips_features(np.stack([audio for audio, _ in clips]), rate)
    white = evaluate.clips_features(
        np.random.default_rng(0).normal(0, 0.1, (count, 2 * rate)).astype(np.float32), rate)
    assert evaluate.distances(generated, reference)["frechet_mel"] < \
        0.7 * evaluate.distances(white, reference)["frechet_mel"]


def test_the_shipped_model_generates_finite_music_like_audio_of_the_asked_length(tmp_path):
    generates_music_like_clips(PRETRAINED, tmp_path, rate=7350)


CASCADE = os.path.join(ROOT, "pretrained", "soundtracks-cascade")


def test_the_shipped_cascade_is_the_cpu_preset_at_2450_and_7350_then_a_narrower_22050_stage():
    with open(os.path.join(CASCADE, "cascade.json")) as file:
        assert json.load(file) == {"stages": ["sketch", "up7350", "up22050"]}

    def load(stage):
        return params_lib.Params.load(os.path.join(CASCADE, stage, "params.json"))
    assert load("sketch") == params_lib.preset("cpu", decimation=9)
    assert load("up7350") == params_lib.preset("cpu", upsample_from=2450, gain_rate=2450)
    # C=32 (not the preset's 48) so that 30 s at 22050 Hz fits in 30 s (bench/README.md).
    assert load("up22050") == params_lib.preset(
        "cpu", decimation=1, upsample_from=7350, gain_rate=2450, residual_channels=32)


def test_the_shipped_cascade_generates_finite_music_like_audio_of_the_asked_length(tmp_path):
    generates_music_like_clips(CASCADE, tmp_path, rate=22050)


def test_fine_tuning_the_shipped_cascade_refuses_another_architecture_in_one_line(tmp_path):
    from test_bad_input import assert_one_line_refusal
    result = command("train.py", f"--init_from={CASCADE}", "--residual_channels=64",
                     f"--model_dir={tmp_path / 'mine'}")
    assert_one_line_refusal(result, f"--init_from={CASCADE}/sketch holds a model with other "
                            "architecture/diffusion params (residual_channels 48 -> 64)")
    assert not (tmp_path / "mine").exists()
