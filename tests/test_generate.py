"""generate.py end to end, on a tiny model trained for 30 steps (conftest's model_dir)."""

import os

import numpy as np
import pytest
import soundfile

from conftest import TINY, command, tone, write_audio


def generate(model_dir, output_dir, *flags):
    return command("generate.py", f"--model_dir={model_dir}", f"--output_dir={output_dir}",
                   *flags)


def written(result):
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.endswith(".wav")]


def read_all(paths):
    return [soundfile.read(path, dtype="float32") for path in paths]


def test_writes_clips_of_exact_length_and_repeats_byte_for_byte(model_dir, tmp_path):
    flags = ["--seconds=3", "--num_samples=2", "--sampler=fast", "--seed=4"]
    first = written(generate(model_dir, tmp_path / "a", *flags))
    assert len(first) == 2 and all(os.path.dirname(p) == str(tmp_path / "a") for p in first)
    for audio, rate in read_all(first):
        assert rate == 7350 and audio.shape == (3 * 7350,)
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1
    assert soundfile.info(first[0]).subtype == "PCM_16"
    again = written(generate(model_dir, tmp_path / "b", *flags))
    for one, other in zip(first, again):
        with open(one, "rb") as a, open(other, "rb") as b:
            assert a.read() == b.read()
    other_seed = written(generate(model_dir, tmp_path / "c", *flags[:-1], "--seed=5"))
    assert not np.array_equal(read_all(other_seed)[0][0], read_all(first)[0][0])


@pytest.fixture(scope="module")
def untrained_model_dir(tmp_path_factory):
    """A tiny model dir whose EMA weights are random (the output layer too, so the network's
    output is far from zero and any windowing error shows) and whose raw weights are NaN."""
    import tensorflow as tf

    import params as params_lib
    from network import DiffWave

    model_dir = tmp_path_factory.mktemp("untrained")
    params = params_lib.preset("tiny")
    params.save(str(model_dir / "params.json"))
    tf.random.set_seed(0)
    model, ema = DiffWave(params).build_for(), DiffWave(params).build_for()
    kernel, bias = ema.output_projection.get_weights()
    ema.output_projection.set_weights([np.random.default_rng(0).normal(0, 0.3, kernel.shape),
                                       bias])
    for weight in model.weights:
        weight.assign(tf.fill(weight.shape, float("nan")))
    tf.train.Checkpoint(model=model, ema=ema).save(str(model_dir / "checkpoints" / "ckpt"))
    return model_dir


def test_generation_uses_the_ema_weights_unless_told_not_to(untrained_model_dir, tmp_path):
    [(audio, _)] = read_all(written(generate(untrained_model_dir, tmp_path / "ema",
                                             "--samples=500")))
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    raw = generate(untrained_model_dir, tmp_path / "raw", "--samples=500", "--no_ema")
    assert raw.returncode != 0 and "holds NaN or infinite weights" in raw.stderr


def test_clip_does_not_depend_on_batching_or_windowing(untrained_model_dir, tmp_path):
    alone = written(generate(untrained_model_dir, tmp_path / "alone", "--samples=3000",
                             "--num_samples=2"))
    together = written(generate(untrained_model_dir, tmp_path / "together", "--samples=3000",
                                "--num_samples=2", "--batch_size=2", "--window=700"))
    for (one, _), (other, _) in zip(read_all(alone), read_all(together)):
        assert np.mean(np.abs(one) < 0.99) > 0.3  # most of it unclipped: a difference shows
        np.testing.assert_allclose(one, other, atol=2 / 32768)  # one 16-bit step of rounding


@pytest.mark.parametrize("flags, rate, length", [
    (["--output_rate=22050", "--seconds=1.5"], 22050, 33075),
    (["--output_rate=44100", "--samples=1000", "--sampler=ddim", "--steps=5"], 44100, 1000),
    (["--seconds=0.5", "--sampler=ddpm", "--clip_x0", "--no_ema"], 7350, 3675),
])
def test_rates_lengths_and_samplers(model_dir, tmp_path, flags, rate, length):
    [(audio, file_rate)] = read_all(written(generate(model_dir, tmp_path, *flags)))
    assert file_rate == rate and audio.shape == (length,) and np.isfinite(audio).all()


def test_corrector_steps_change_the_clip_and_cost_network_calls(model_dir, tmp_path):
    plain = generate(model_dir, tmp_path / "plain", "--samples=2000")
    corrected = generate(model_dir, tmp_path / "corrected", "--samples=2000",
                         "--corrector_steps=2")
    [(without, _)], [(with_correctors, _)] = read_all(written(plain)), read_all(written(corrected))
    assert np.isfinite(with_correctors).all() and with_correctors.shape == without.shape
    assert np.abs(with_correctors - without).max() > 1e-3
    assert "step 18/18" in corrected.stderr  # 6 fast steps x (1 + 2 correctors)


def test_continuous_noise_conditioning_trains_tiny_and_generates(tmp_path, clips):
    model_dir = tmp_path / "continuous"
    trained = command("train.py", *TINY, "--max_steps=30",
                  "--log_every=10", "--noise_conditioning=continuous",
                  f"--model_dir={model_dir}", f"--cache_dir={clips}")
    assert trained.returncode == 0, trained.stderr
    shown = [line.split() for line in trained.stdout.splitlines() if line.startswith("step ")]
    assert [words[1] for words in shown] == ["1/30", "2/30", "10/30", "20/30", "30/30"]
    losses = [float(words[3]) for words in shown]
    assert losses[-1] < losses[0]
    assert '"noise_conditioning": "continuous"' in (model_dir / "params.json").read_text()
    [(audio, _)] = read_all(written(generate(model_dir, tmp_path / "out", "--samples=2000",
                                             "--fast_schedule=2e-4,3e-3,0.03,0.3")))
    assert audio.shape == (2000,) and np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_variations_return_the_input_at_strength_0_ignore_it_at_1_and_follow_it_between(
        model_dir, tmp_path):
    """SDEdit on a tone: the clip's likeness to the (resampled, normalised) input falls as
    --strength rises; at 1 the clip is the one generated without an input."""
    from data import load_audio
    from params import Params

    write_audio(str(tmp_path / "in.wav"), tone(1.5, 22050, 330, amplitude=0.5), 22050)
    heard = load_audio(str(tmp_path / "in.wav"), Params.load(str(model_dir / "params.json")))
    sampler = ["--sampler=ddim", "--steps=20"]
    clips = {}
    for strength in (0, 0.2, 0.8, 1):
        [(clips[strength], _)] = read_all(written(generate(
            model_dir, tmp_path / str(strength), f"--init_audio={tmp_path / 'in.wav'}",
            f"--strength={strength}", *sampler)))
        assert clips[strength].shape == heard.shape == (round(1.5 * 7350),)
    np.testing.assert_allclose(clips[0], heard, atol=2 / 32768)  # a 16-bit step of rounding
    likeness = {strength: np.corrcoef(clip, heard)[0, 1] for strength, clip in clips.items()}
    assert likeness[0.2] > 0.3 and likeness[0.2] > likeness[0.8] + 0.2
    [(plain, _)] = read_all(written(generate(model_dir, tmp_path / "plain",
                                             f"--samples={len(heard)}", *sampler)))
    np.testing.assert_array_equal(clips[1], plain)
    [(resampled, rate)] = read_all(written(generate(
        model_dir, tmp_path / "44k", f"--init_audio={tmp_path / 'in.wav'}", "--strength=0",
        "--output_rate=44100")))
    assert rate == 44100 and resampled.shape == (round(1.5 * 44100),)


def heard_16_bit(path, model_dir, tmp_path):
    """The file as generate.py keeps it (data.load_audio), through a 16-bit WAV as it is written."""
    from data import load_audio
    from data.audio_files import write_wav
    from params import Params

    heard = load_audio(path, Params.load(str(model_dir / "params.json")))
    write_wav(str(tmp_path / "heard.wav"), heard, 7350)
    return soundfile.read(str(tmp_path / "heard.wav"), dtype="float32")[0]


def test_continuation_starts_with_the_prompt_bit_for_bit_and_inpainting_keeps_the_rest(
        model_dir, tmp_path):
    prompt = write_audio(str(tmp_path / "in.wav"), tone(0.5, 22050, 330), 22050)
    heard = heard_16_bit(prompt, model_dir, tmp_path)
    [(continued, _)] = read_all(written(generate(
        model_dir, tmp_path / "continued", f"--prompt_audio={prompt}", "--seconds=1.2",
        "--sampler=ddim", "--steps=5", "--resamplings=1")))
    assert continued.shape == (round(1.2 * 7350),) and len(heard) == round(0.5 * 7350)
    np.testing.assert_array_equal(continued[:len(heard)], heard)
    assert np.abs(continued[len(heard):]).max() > 0

    song = write_audio(str(tmp_path / "song.wav"), tone(1.5, 22050, 330), 22050)
    heard = heard_16_bit(song, model_dir, tmp_path)
    [(inpainted, _)] = read_all(written(generate(
        model_dir, tmp_path / "inpainted", f"--prompt_audio={song}", "--inpaint=0.5:1")))
    first, end = round(0.5 * 7350), 7350
    assert inpainted.shape == heard.shape
    np.testing.assert_array_equal(np.delete(inpainted, np.s_[first:end]),
                                  np.delete(heard, np.s_[first:end]))
    assert not np.allclose(inpainted[first:end], heard[first:end], atol=0.05)
