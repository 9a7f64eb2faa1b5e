"""Label (genre) conditioning with classifier-free guidance: train.py --labels=folders,
generate.py --label --guidance, on tones in two labelled pitch ranges (conftest)."""

import json
import shutil

import keras
import numpy as np
import pytest
import soundfile
import tensorflow as tf

import params as params_lib
from conftest import PITCH_RANGES, TINY, command, tone, write_audio
from diffusion import samplers
from network import DiffWave
from network.windowed import windowed_network
from test_bad_input import assert_one_line_refusal
from test_generate import generate, written

CLIPS = 8


def low_over_high(clip, rate=7350):
    """log10 of the clip's mean spectral power density in the low range over the high's (each
    widened by a quarter): > 0 where the low range is louder."""
    hz = np.fft.rfftfreq(len(clip), 1 / rate)
    power = np.abs(np.fft.rfft(clip * np.hanning(len(clip)))) ** 2
    low, high = ((power[(hz >= start * 0.8) & (hz <= end * 1.25)]).mean()
                 for start, end in PITCH_RANGES.values())
    return np.log10(low / high)


def labelled_clips(model_dir, folder, *flags):
    paths = written(generate(model_dir, folder, f"--num_samples={CLIPS}",
                             f"--batch_size={CLIPS}", "--seconds=0.5", *flags))
    return [soundfile.read(path, dtype="float32")[0] for path in paths]


def test_labels_come_from_folders_and_are_saved_with_their_clip_counts(labelled_model_dir):
    saved = params_lib.Params.load(str(labelled_model_dir / "params.json"))
    assert saved.label_names == ("high", "low")
    counts = json.loads((labelled_model_dir / "labels.json").read_text())
    assert set(counts) == {"high", "low"} and all(count > 0 for count in counts.values())
    log = (labelled_model_dir.parent / "train.log").read_text()
    assert f"labels: high ({counts['high']} clips), low ({counts['low']} clips)" in log


def test_each_label_generates_its_pitch_range_and_guidance_sharpens_it(labelled_model_dir,
                                                                       tmp_path):
    """Chance, for a model that ignores labels, is one label of the two in range (all its clips
    fall on one side); here every clip of both labels lands in its own range, and guidance 3
    moves them further in than guidance 1."""
    towards_own = {}
    for guidance in (1, 3):
        for label in PITCH_RANGES:
            clips = labelled_clips(labelled_model_dir, tmp_path / f"{label}{guidance}",
                                   f"--label={label}", f"--guidance={guidance}")
            sign = 1 if label == "low" else -1
            towards_own[label, guidance] = [sign * low_over_high(clip) for clip in clips]
            assert np.mean(np.array(towards_own[label, guidance]) > 0) >= 7 / 8, (
                label, guidance, towards_own[label, guidance])
    for label in PITCH_RANGES:
        assert np.mean(towards_own[label, 3]) > np.mean(towards_own[label, 1]) + 0.2
    unlabelled = [low_over_high(clip) for clip in labelled_clips(labelled_model_dir,
                                                                 tmp_path / "none")]
    assert len({value > 0 for value in unlabelled}) == 1  # one side for both labels: chance


def test_labelled_generation_works_with_every_sampler_window_and_the_corrector(
        labelled_model_dir, tmp_path):
    for flags in (["--sampler=ddim", "--steps=8", "--window=500", "--corrector_steps=1"],
                  ["--sampler=ddpm", "--window=700"]):
        [clip] = labelled_clips(labelled_model_dir, tmp_path / flags[0][10:], "--label=high",
                                "--guidance=2", "--num_samples=1", *flags)
        assert np.isfinite(clip).all() and -low_over_high(clip) > 0


def conditional_network(seed=0):
    """A tiny labelled DiffWave with random weights everywhere (its output layer too)."""
    params = params_lib.preset("tiny", label_names=("a", "b", "c"))
    keras.utils.set_random_seed(seed)
    network = DiffWave(params).build_for()
    network.output_projection.kernel.assign(tf.random.normal(
        network.output_projection.kernel.shape))
    return network


def test_guidance_is_one_batched_call_that_extrapolates_from_the_unlabelled_prediction():
    network = conditional_network()
    x, steps = tf.random.normal([2, 300, 1], seed=1), tf.constant([3.0, 40.0])
    calls = []
    windowed = windowed_network(network, 128, on_window=lambda *_: calls.append(1))
    guided = samplers.denoiser(windowed, 1, network.no_label, 2.5)(x, steps)
    assert len(calls) == 3  # one call per window: both predictions in one batch
    conditional = network({"audio": x, "steps": steps, "labels": tf.constant([1, 1])})
    unconditional = network({"audio": x, "steps": steps, "labels": tf.constant([3, 3])})
    assert not np.allclose(conditional, unconditional, atol=1e-3)
    np.testing.assert_allclose(guided, unconditional + 2.5 * (conditional - unconditional),
                               atol=1e-4)
    np.testing.assert_allclose(samplers.denoiser(windowed, 1, 3, 1.0)(x, steps), conditional,
                               atol=1e-5)
    np.testing.assert_allclose(samplers.denoiser(windowed, None, 3)(x, steps), unconditional,
                               atol=1e-5)
    np.testing.assert_allclose(network({"audio": x, "steps": steps}), unconditional,
                               atol=1e-6)  # the default
    np.testing.assert_allclose(samplers.denoiser(windowed)(x, steps), unconditional, atol=1e-5)


def test_label_dropout_hides_that_share_of_labels_the_same_way_every_run():
    from diffusion import training as train
    from diffusion import Diffusion

    diffusion = Diffusion(np.linspace(1e-4, 0.05, 50))
    batches = tf.data.Dataset.from_tensors({"audio": tf.zeros([64, 8, 1]),
                                            "labels": tf.zeros([64], tf.int32)})
    dataset = train.with_training_noise(batches.repeat(40), diffusion, 5, 0, 0.25, 7)
    labels = np.concatenate([batch["labels"].numpy() for batch in dataset])
    again = np.concatenate([batch["labels"].numpy() for batch in dataset])
    assert set(labels) == {0, 7} and abs(np.mean(labels == 7) - 0.25) < 0.03
    np.testing.assert_array_equal(labels, again)
    resumed = train.with_training_noise(batches.repeat(20), diffusion, 5, 20, 0.25, 7)
    np.testing.assert_array_equal(np.concatenate([batch["labels"].numpy() for batch in resumed]),
                                  labels[20 * 64:])


@pytest.mark.parametrize("flags, expected", [
    (["--label=middle"], "--label=middle: unknown; --model_dir="),
    (["--label=middle"], "knows high, low"),
    (["--guidance=2"], "--guidance applies to --label"),
    (["--label=low", "--guidance=-1"], "--guidance must be >= 0"),
])
def test_generate_refuses_unknown_labels_naming_the_known_ones(labelled_model_dir, tmp_path,
                                                                flags, expected):
    assert_one_line_refusal(generate(labelled_model_dir, tmp_path / "out", *flags), expected)
    assert not (tmp_path / "out").exists()


def test_a_label_on_an_unconditional_model_is_refused(model_dir, tmp_path):
    assert_one_line_refusal(generate(model_dir, tmp_path / "out", "--label=jazz"),
                            "is an unconditional model (trained without --labels=folders)")


def test_train_refuses_labels_it_cannot_have(model_dir, tmp_path, clips):
    loose = tmp_path / "loose"
    write_audio(str(loose / "jazz" / "a.wav"), tone(1.0, 22050), 22050)
    write_audio(str(loose / "b.wav"), tone(1.0, 22050), 22050)
    one = tmp_path / "one"
    write_audio(str(one / "jazz" / "a.wav"), tone(1.0, 22050), 22050)
    for flags, expected in [
            ([f"--data_dir={loose}"], "has files outside any folder, which would have no label"),
            ([f"--data_dir={one}"], "has 1 label folder(s) (jazz); it needs two or more"),
            ([], "--labels=folders needs --data_dir"),
            ([f"--data_dir={one}", f"--init_from={model_dir}"],
             f"--init_from={model_dir} holds an unconditional model")]:
        target = tmp_path / "model"
        assert_one_line_refusal(command("train.py", *TINY, "--labels=folders",
                                        f"--model_dir={target}", f"--cache_dir={clips}",
                                        "--max_steps=1", *flags), expected)
        assert not target.exists()


def test_a_labelled_model_refuses_data_with_a_label_it_does_not_know(labelled_model_dir,
                                                                     tmp_path, clips):
    data = tmp_path / "data"
    for label in ("low", "middle"):
        write_audio(str(data / label / "a.wav"), tone(1.0, 22050, 440), 22050)
    copy = tmp_path / "copy"
    shutil.copytree(labelled_model_dir, copy)
    assert_one_line_refusal(command("train.py", f"--model_dir={copy}", f"--data_dir={data}",
                                    f"--cache_dir={clips}", "--max_steps=700"),
                            "has clips labelled middle, which the model does not know (its labels: "
                            "high, low)")
