"""Cascades: an upsampler (a DiffWave conditioned on lower-rate audio), its training pairs and
conditioning augmentation, and generation through the stages."""

import json
import shutil

import numpy as np
import pytest
import soundfile
import tensorflow as tf

import params as params_lib
from conftest import command
from data import pipeline
from diffusion import Diffusion, generation
from network import DiffWave
from network.windowed import windowed_network

UPSAMPLER = params_lib.preset("tiny", residual_layers=4, dilation_cycle=3, upsample_from=2450)


def random_upsampler(dilated_conv="direct"):
    """A tiny upsampler with every weight random (the output layer too)."""
    network = DiffWave(UPSAMPLER, dilated_conv).build_for()
    for index, weight in enumerate(network.weights):
        weight.assign(tf.random.stateless_normal(weight.shape, [index, 1]) * 0.3)
    return network


def upsampler_inputs(length=900):
    return {"audio": tf.random.stateless_normal([2, length, 1], [1, 1]),
            "steps": tf.constant([3.0, 30.0]),
            "condition": tf.random.stateless_normal([2, length, 1], [2, 2]),
            "condition_level": tf.constant([0.0, 0.05])}


def test_the_condition_changes_the_prediction_and_windows_equal_the_whole():
    network = random_upsampler()
    inputs = upsampler_inputs()
    whole = network(inputs).numpy()
    other = network({**inputs, "condition": -inputs["condition"]}).numpy()
    assert np.abs(whole - other).max() > 1e-2  # the condition is heard
    louder = network({**inputs, "condition_level": tf.constant([0.5, 0.5])}).numpy()
    assert np.abs(whole - louder).max() > 1e-3  # and so is its noise level
    windowed = windowed_network(network, 128)(inputs).numpy()
    np.testing.assert_allclose(windowed, whole, atol=1e-4)


def test_folded_and_direct_dilated_convolutions_agree_with_a_condition():
    direct = random_upsampler("direct")
    folded = DiffWave(UPSAMPLER, "folded").build_for()
    folded.set_weights(direct.get_weights())
    inputs = upsampler_inputs(301)
    np.testing.assert_allclose(folded(inputs), direct(inputs), atol=1e-4)


def test_an_upsampler_trains_under_mixed_precision_with_float32_noise_levels():
    import keras
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        network = DiffWave(UPSAMPLER, "folded").build_for()
        network.output_projection.kernel.assign(tf.ones_like(network.output_projection.kernel))
        inputs = upsampler_inputs(256)
        with tf.GradientTape() as tape:
            predicted = network(inputs, training=True)
            loss = tf.reduce_mean(tf.square(predicted))
        condition_weights = [layer.condition_filter.kernel for layer in network.residual_layers]
        gradients = tape.gradient(loss, condition_weights)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert predicted.dtype == tf.float32
    assert network.condition_level_embedding.dtype_policy.compute_dtype == "float32"
    assert all(np.abs(gradient.numpy()).max() > 0 for gradient in gradients)


def test_training_pairs_are_a_clip_and_its_own_low_band_aligned():
    params = params_lib.preset("tiny", upsample_from=2450, clip_samples=4096)
    rate, crop = params.sample_rate, pipeline.condition_crop(params)
    time = np.arange(params.clip_samples) / rate
    low, high = np.sin(2 * np.pi * 300 * time + 0.3), np.sin(2 * np.pi * 2000 * time)
    batch = {"audio": tf.constant((0.1 * (low + high))[None, :, None], tf.float32)}
    pair = pipeline._upsampling_pairs(params)(batch)
    assert pair["audio"].shape == pair["condition"].shape == (
        1, pipeline.training_samples(params), 1)
    np.testing.assert_allclose(pair["audio"][0, :, 0], 0.1 * (low + high)[crop:-crop],
                               atol=1e-6)
    # The condition is the 300 Hz partial alone (2000 Hz is above 2450 Hz's Nyquist), in step.
    np.testing.assert_allclose(pair["condition"][0, :, 0], 0.1 * low[crop:-crop], atol=2e-3)


def test_a_stages_output_is_limited_to_the_band_it_trained_on():
    params = params_lib.preset("tiny", decimation=9)  # 2450 Hz: passband to 1102.5 Hz, then
    # the decimation filter's transition band up to the stopband at Nyquist, 1225 Hz
    rate = params.sample_rate
    time = np.arange(4000) / rate
    inside, above = np.sin(2 * np.pi * 500 * time), np.sin(2 * np.pi * 1224 * time)
    limited = pipeline.band_limited(tf.constant((inside + above)[None, :, None], tf.float32),
                                    params).numpy()[0, 500:-500, 0]
    np.testing.assert_allclose(limited, inside[500:-500], atol=1e-3)
    full = params_lib.preset("tiny", decimation=1)  # trained on unfiltered audio
    audio = tf.constant(above[None, :, None], tf.float32)
    np.testing.assert_array_equal(pipeline.band_limited(audio, full), audio)


def test_post_filtering_keeps_the_stage_below_and_the_known_audio_exactly(cascade_dir):
    """An upsampler's output, post-filtered, has the condition's low band (its own drawn one
    replaced) and the known region of a continuation; as drawn it has neither."""
    from diffusion import samplers
    sketch = generation.Stage.load(str(cascade_dir / "sketch"))
    upsampler = generation.Stage.load(str(cascade_dir / "upsampler"))
    params = upsampler.params
    # What a post-filtered sketch gives: audio in the band it trained on.
    below = pipeline.band_limited(0.1 * tf.random.stateless_normal([1, 1000, 1], [7, 7]),
                                  sketch.params)
    samples = 2900
    known = samplers.known(np.linspace(-0.1, 0.1, samples), 200, samples)
    out = {post: upsampler.generate(1, samples, seed=3, below=below, post_filter=post,
                                    keep=known) for post in (True, False)}
    condition = upsampler.condition(below, samples)[0, :, 0].numpy()
    drawn = slice(700, samples - 300)  # away from the known audio and the clip's end

    def low_band(audio):  # its spectrum below 1000 Hz, in the passband of both filters
        window = np.hanning(drawn.stop - drawn.start)
        frequencies = np.fft.rfftfreq(len(window), 1 / params.sample_rate)
        return np.fft.rfft(np.asarray(audio)[drawn] * window)[frequencies < 1000]
    scale = np.abs(low_band(condition)).max()
    assert np.abs(low_band(out[True][0, :, 0]) - low_band(condition)).max() < 1e-2 * scale
    assert np.abs(low_band(out[False][0, :, 0]) - low_band(condition)).max() > 0.1 * scale
    np.testing.assert_array_equal(out[True][0, :200, 0], known.audio[0, :200, 0])


def test_condition_level_zero_leaves_the_condition_as_it_is():
    diffusion = Diffusion.from_params(UPSAMPLER)
    condition = tf.random.stateless_normal([3, 50, 1], [4, 4])
    noise = tf.random.stateless_normal([3, 50, 1], [5, 5])
    kept = diffusion.noise_condition(condition, tf.zeros([3]), noise)
    np.testing.assert_array_equal(kept, condition)
    noised = diffusion.noise_condition(condition, tf.fill([3], 0.5), noise)
    assert np.abs(noised - condition).min() > 0


def test_training_noises_the_condition_to_levels_up_to_condition_noise_max():
    from diffusion import training as train
    diffusion = Diffusion.from_params(UPSAMPLER)
    condition = tf.random.stateless_normal([64, 20, 1], [6, 6])
    batches = tf.data.Dataset.from_tensors({"audio": tf.zeros([64, 20, 1]),
                                            "condition": condition})
    for maximum in (0.0, 0.2):
        batch = next(iter(train.with_training_noise(batches, diffusion, 3, 0,
                                                    condition_noise_max=maximum)))
        levels = batch["condition_level"].numpy()
        assert levels.min() >= 0 and levels.max() <= maximum
        if maximum == 0:
            np.testing.assert_array_equal(batch["condition"], condition)
        else:
            assert levels.max() > 0.15 and levels.min() < 0.05  # spread over the range
            moved = np.abs(batch["condition"] - condition).mean(axis=(1, 2))
            assert np.corrcoef(levels, moved)[0, 1] > 0.8  # noisier at higher levels


def test_an_upsampler_sets_each_files_gain_on_the_band_it_is_conditioned_on(tmp_path):
    # A loud partial above 1225 Hz and a quieter one below: the gain set on the low band makes
    # the low band reach the target level, not the whole clip (2.2 times as loud).
    from conftest import tone, write_audio
    write_audio(str(tmp_path / "data" / "a.wav"), tone(2, 22050, 300.0, 0.05)
                + tone(2, 22050, 2500.0, 0.1), 22050, subtype="FLOAT")
    params = params_lib.preset("tiny", upsample_from=2450, gain_rate=2450, val_fraction=0.0,
                               batch_size=4)
    clip_cache = pipeline.prepare(params, str(tmp_path / "data"), str(tmp_path / "cache"))
    pairs = next(iter(pipeline.train_dataset(clip_cache, params)))
    assert np.sqrt(np.mean(pairs["condition"] ** 2)) == pytest.approx(0.1, rel=0.1)
    assert np.sqrt(np.mean(pairs["audio"] ** 2)) == pytest.approx(0.224, rel=0.1)


def test_an_upsamplers_tensorboard_clips_upsample_real_low_bands(cascade_dir):
    """TensorBoard shows an upsampler's generated clips beside the validation clips ("real")
    and their low bands it was given ("condition"), all at its rate: the condition holds the
    clip's band below 1225 Hz (half of 2450 Hz) and nothing above it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(cascade_dir / "upsampler"), size_guidance={"tensors": 0})
    events.Reload()
    clips = {}
    for name in ("generated", "real", "condition"):
        encoded = tf.make_ndarray(events.Tensors(f"{name}/audio")[-1].tensor_proto)[0, 0]
        audio, rate = tf.audio.decode_wav(encoded)
        assert int(rate) == 7350
        clips[name] = audio.numpy()[:, 0]
    assert len(clips["generated"]) == len(clips["real"]) == len(clips["condition"])
    spectra = {name: np.abs(np.fft.rfft(audio)) ** 2 for name, audio in clips.items()}
    high = np.fft.rfftfreq(len(clips["real"]), 1 / 7350) > 1300
    assert spectra["condition"][high].sum() < 1e-3 * spectra["condition"].sum()
    low = ~high
    np.testing.assert_allclose(spectra["condition"][low].sum(), spectra["real"][low].sum(),
                               rtol=0.1)


def test_cascade_length_rate_and_seeded_reproducibility(cascade_dir, tmp_path):
    cascade = generation.Cascade.load(str(cascade_dir))
    assert cascade.lengths(7351) == [2451, 7351]
    assert cascade.sample_rate == 7350
    first = cascade.generate(2, 7351, seed=5).numpy()
    again = cascade.generate(1, 7351, seed=5, first_example=1).numpy()
    other = cascade.generate(1, 7351, seed=6).numpy()
    assert first.shape == (2, 7351, 1) and np.isfinite(first).all()
    np.testing.assert_allclose(again[0], first[1], atol=1e-5)  # not the batch: the seed
    assert np.abs(other[0] - first[0]).max() > 1e-3
    # Stage by stage: the sketch's own streams, then the upsampler conditioned on its audio.
    sketch = cascade.stages[0].generate(2, 2451, seed=5)
    upsampled = cascade.stages[1].generate(2, 7351, seed=5, below=sketch, stage=1)
    np.testing.assert_allclose(upsampled, first, atol=1e-5)
    unconditioned = cascade.stages[1].generate(2, 7351, seed=5, below=0 * sketch, stage=1)
    assert np.abs(unconditioned - first).max() > 1e-3


def test_generate_writes_a_cascade_at_its_top_rate_the_same_for_the_same_seed(cascade_dir,
                                                                             tmp_path):
    outputs = []
    for name in ("a", "b"):
        result = command("generate.py", f"--model_dir={cascade_dir}", "--seconds=0.5",
                         "--num_samples=2", f"--output_dir={tmp_path / name}")
        assert result.returncode == 0, result.stderr
        assert "stage 2/2" in result.stderr
        outputs.append([soundfile.read(tmp_path / name / f"fast_seed0_00{i}.wav")
                        for i in range(2)])
    for (audio, rate), (again, _) in zip(*outputs):
        assert rate == 7350 and len(audio) == 3675
        np.testing.assert_array_equal(audio, again)
    result = command("generate.py", f"--model_dir={cascade_dir}", "--seconds=0.5",
                     "--output_rate=22050", f"--output_dir={tmp_path / 'c'}")
    assert result.returncode == 0, result.stderr
    assert soundfile.info(str(tmp_path / "c" / "fast_seed0_000.wav")).samplerate == 22050


@pytest.mark.parametrize("change, expected", [
    (lambda stages: stages.reverse(), "the first stage is an upsampler"),
    (lambda stages: stages.__setitem__(1, "sketch"), "generates from noise, but the stage"),
])
def test_stages_that_do_not_chain_are_refused_naming_the_stage(cascade_dir, tmp_path, change,
                                                                expected):
    folder = tmp_path / "cascade"
    shutil.copytree(cascade_dir, folder)
    stages = ["sketch", "upsampler"]
    change(stages)
    (folder / "cascade.json").write_text(json.dumps({"stages": stages}))
    result = command("generate.py", f"--model_dir={folder}", f"--output_dir={tmp_path / 'o'}")
    assert result.returncode == 1
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_an_upsampler_of_another_gain_band_is_refused(cascade_dir, tmp_path):
    folder = tmp_path / "cascade"
    shutil.copytree(cascade_dir, folder)
    saved = json.loads((folder / "upsampler" / "params.json").read_text())
    (folder / "upsampler" / "params.json").write_text(json.dumps({**saved, "gain_rate": 7350}))
    result = command("generate.py", f"--model_dir={folder}", f"--output_dir={tmp_path / 'o'}")
    assert result.returncode == 1 and "--gain_rate=2450" in result.stderr


def test_a_cascade_varies_and_continues_audio_at_every_stage(cascade_dir, tmp_path):
    """--init_audio: strength 0 gives the file back (at the top rate, as the top stage hears
    it); --prompt_audio: the clip starts with the prompt, kept exactly at the top stage."""
    from conftest import tone, write_audio
    from data import load_audio
    write_audio(str(tmp_path / "in.wav"), tone(1.0, 22050, 330, amplitude=0.5), 22050)
    top = params_lib.Params.load(str(cascade_dir / "upsampler" / "params.json"))
    heard = load_audio(str(tmp_path / "in.wav"), top)
    result = command("generate.py", f"--model_dir={cascade_dir}", "--strength=0",
                     f"--init_audio={tmp_path / 'in.wav'}", f"--output_dir={tmp_path / 'v'}")
    assert result.returncode == 0, result.stderr
    varied, rate = soundfile.read(tmp_path / "v" / "fast_seed0_000.wav", dtype="float32")
    assert rate == 7350 and varied.shape == heard.shape
    np.testing.assert_allclose(varied, heard, atol=2 / 32768)
    result = command("generate.py", f"--model_dir={cascade_dir}", "--seconds=1.5",
                     f"--prompt_audio={tmp_path / 'in.wav'}", f"--output_dir={tmp_path / 'c'}")
    assert result.returncode == 0, result.stderr
    continued, _ = soundfile.read(tmp_path / "c" / "fast_seed0_000.wav", dtype="float32")
    assert len(continued) == round(1.5 * 7350)
    np.testing.assert_allclose(continued[:len(heard)], heard, atol=2 / 32768)
    assert np.abs(continued[len(heard):]).max() > 0


def test_a_checkpoint_for_a_cascade_is_refused_in_one_line(cascade_dir, tmp_path):
    result = command("generate.py", f"--model_dir={cascade_dir}", "--checkpoint=ckpt-30",
                     f"--output_dir={tmp_path / 'o'}")
    assert result.returncode == 1
    assert "is a cascade" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("stage", ["", "upsampler"])
def test_search_schedule_takes_a_cascades_sketch_and_says_so(cascade_dir, tmp_path, stage):
    result = command("search_schedule.py", f"--model_dir={cascade_dir / stage}",
                     f"--reference={tmp_path}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert ("is a cascade" if not stage else "is an upsampler") in result.stderr


@pytest.mark.parametrize("flags, expected", [
    (["--seconds=1000000"], "GB of memory, more than the"),  # the top rate's length counts
    (["--label=jazz"], "unconditional model"),
    (["--condition_level=2"], "--condition_level must be in [0, 1]"),
])
def test_a_cascade_refuses_what_a_model_refuses_in_one_line(cascade_dir, tmp_path, flags,
                                                            expected):
    from test_bad_input import assert_one_line_refusal
    result = command("generate.py", f"--model_dir={cascade_dir}", *flags,
                     f"--output_dir={tmp_path / 'o'}")
    assert_one_line_refusal(result, expected)
    assert not (tmp_path / "o").exists()


def test_a_labelled_sketch_takes_the_label_through_an_unlabelled_upsampler_to_22050(
        labelled_model_dir, tmp_path_factory, worker_id, clips, tmp_path):
    """A cascade 7350 -> 22050 Hz on the labelled tones' model: --label and --guidance go to
    the sketch, and the upsampler (trained without labels, its gain on the sketch's band)
    carries each label's clip to the top rate."""
    from conftest import _trained_once
    upsampler = _trained_once(tmp_path_factory, worker_id, "upsampler_22050", [
        "--preset=tiny", "--synthetic_tones=32", "--residual_layers=3", "--decimation=1",
        "--upsample_from=7350", "--max_steps=20", "--checkpoint_every=20",
        f"--cache_dir={clips}"])
    folder = tmp_path / "cascade"
    folder.mkdir()
    (folder / "cascade.json").write_text(json.dumps({"stages": [
        str(labelled_model_dir), str(upsampler)]}))
    files = {}
    for label in ("low", "high"):
        result = command("generate.py", f"--model_dir={folder}", f"--label={label}",
                         "--guidance=2", "--seconds=0.3", f"--output_dir={tmp_path / label}")
        assert result.returncode == 0, result.stderr
        files[label], rate = soundfile.read(tmp_path / label / f"{label}_fast_seed0_000.wav",
                                            dtype="float32")
        assert rate == 22050 and len(files[label]) == round(0.3 * 22050)
    assert np.abs(files["low"] - files["high"]).max() > 1e-3
    cascade = generation.Cascade.load(str(folder))
    sketch, upsampler = cascade.stages
    for index, label in enumerate(("high", "low")):  # label_names' order
        below = sketch.generate(1, 2205, label=index, guidance=2.0)
        again = upsampler.generate(1, len(files[label]), below=below, stage=1).numpy()
        np.testing.assert_allclose(np.clip(again[0, :, 0], -1, 1), files[label], atol=2 / 32768)


def test_fine_tuning_a_cascade_trains_one_stage_and_leaves_a_cascade_of_copies(cascade_dir,
                                                                               tmp_path):
    """train.py --init_from=CASCADE on new music trains its sketch (--stage: another stage) in
    --model_dir/STAGE, beside copies of the stages it leaves as they are, so generate.py runs
    --model_dir as a cascade; the same command resumes; a stage that is not there, a folder
    that holds one model and --stage without a cascade are refused in one line."""
    from conftest import tone, write_audio
    from test_bad_input import assert_one_line_refusal
    for index, frequency in enumerate((220.0, 330.0)):
        write_audio(str(tmp_path / "mine" / f"{index}.wav"), tone(3.0, 22050, frequency), 22050)

    def train(model_dir, *flags):
        return command("train.py", f"--init_from={cascade_dir}", f"--model_dir={model_dir}",
                       f"--data_dir={tmp_path / 'mine'}", f"--cache_dir={tmp_path / 'cache'}",
                       "--checkpoint_every=2", *flags)

    tuned = tmp_path / "tuned"
    result = train(tuned, "--max_steps=2")
    assert result.returncode == 0, result.stderr
    assert (f"starting from the EMA weights of {cascade_dir}/sketch/checkpoints/ckpt-30"
            in result.stdout)
    assert json.loads((tuned / "cascade.json").read_text()) == {
        "stages": ["sketch", "upsampler"]}
    assert sorted(p.name for p in (tuned / "sketch" / "checkpoints").glob("*.index")) == [
        "ckpt-2.index"]
    for name in ("params.json", "checkpoints/ckpt-30.index",
                 "checkpoints/ckpt-30.data-00000-of-00001"):
        assert (tuned / "upsampler" / name).read_bytes() == (
            cascade_dir / "upsampler" / name).read_bytes()
    generated = command("generate.py", f"--model_dir={tuned}", "--seconds=0.5",
                        f"--output_dir={tmp_path / 'out'}")
    assert generated.returncode == 0, generated.stderr
    audio, rate = soundfile.read(tmp_path / "out" / "fast_seed0_000.wav")
    assert rate == 7350 and len(audio) == 3675 and np.isfinite(audio).all()
    resumed = train(tuned, "--max_steps=3")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step 2" in resumed.stdout

    upsampler = train(tmp_path / "tuned_up", "--stage=upsampler", "--max_steps=1")
    assert upsampler.returncode == 0, upsampler.stderr
    assert (tmp_path / "tuned_up" / "upsampler" / "checkpoints" / "ckpt-1.index").exists()
    assert (tmp_path / "tuned_up" / "sketch" / "params.json").read_bytes() == (
        cascade_dir / "sketch" / "params.json").read_bytes()

    assert_one_line_refusal(train(tmp_path / "a", "--stage=vocoder"),
                            f"--stage=vocoder: --init_from={cascade_dir} has the stages "
                            "sketch, upsampler; give one of them")
    assert_one_line_refusal(train(tuned / "sketch"), "holds a single model; fine-tuning")
    assert_one_line_refusal(
        command("train.py", f"--model_dir={tmp_path / 'b'}", "--stage=sketch"),
        "--stage=sketch names a stage of a cascade")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
