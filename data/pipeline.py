"""The tf.data pipeline: audio files (or built-in tones) in, shuffled batches of clips out.

  probe files -> decode (in-graph for 16-bit WAV, soundfile otherwise) -> mono -> resample to
  input_rate -> FIR low-pass + decimate (in-graph) -> split into clips -> drop near-silent
  clips -> normalise -> disk cache -> shuffle -> batch -> prefetch

The first run for a given data folder and set of preprocessing params builds the cache; later
runs only read it.
"""

import collections
import dataclasses
import hashlib
import itertools
import math
import os

import numpy as np
import tensorflow as tf
from absl import logging

from data import audio_files, cache, lowpass, synthetic
from util import UserError, default_cache_dir, first_line

SYNTHETIC_SOURCE = "built-in tones"


class DataError(UserError):
    """The data cannot be used at all (missing folder, nothing usable in it)."""


@dataclasses.dataclass(frozen=True)
class ClipCache:
    """A complete clip cache and what it holds."""
    folder: str
    manifest: dict


def _is_validation(name, val_fraction):
    """Deterministic per-file split: a hash of the name, independent of the other files."""
    digest = hashlib.sha256(os.fsencode(name)).digest()
    return int.from_bytes(digest[:8], "little") / 2 ** 64 < val_fraction


def _split(names, val_fraction):
    """Indices of validation files; at least one when there are two or more files."""
    val = {i for i, name in enumerate(names) if _is_validation(name, val_fraction)}
    if not val and val_fraction > 0 and len(names) >= 2:
        val = {min(range(len(names)), key=lambda i: hashlib.sha256(os.fsencode(names[i])).digest())}
    return val


# Files longer than this are read in pieces of about this length (bounded memory); each piece
# also reads MARGIN_SECONDS of its neighbours, so that the resampler and the low-pass see
# what they would see in the whole file, and its clips are those of the whole file.
PIECE_SECONDS = 60.0
MARGIN_SECONDS = 0.25
# Validation loss is computed on at most this many clips (spread over the split).
VAL_CLIPS = 64


@dataclasses.dataclass(frozen=True)
class Piece:
    """What one step of the pipeline decodes: a whole source or a piece of a long file."""
    source: int        # index into the sources
    decoder: int       # audio_files.DECODE_*
    start: int = 0     # first frame read
    frames: int = -1   # frames read (-1: to the end)
    skip: int = 0      # decimated samples of margin to drop at the start
    keep: int = -1     # decimated samples kept after them (-1: all)


def label_of(name):
    """A file's label for --labels=folders: the first folder of its path under the data folder
    ("" for a file directly in it)."""
    parts = name.replace(os.sep, "/").split("/")
    return parts[0] if len(parts) > 1 else ""


def _pieces(sources, params):
    """Splits the sources longer than 1.5 PIECE_SECONDS into Pieces on clip boundaries."""
    pieces = []
    rate = params.sample_rate
    for index, source in enumerate(sources):
        if source.frames <= 1.5 * PIECE_SECONDS * source.rate:
            pieces.append(Piece(index, source.decoder))
            continue
        # Model samples that span a whole number of file frames; pieces and margins are
        # multiples of them, and pieces of whole clips too.
        unit = rate // math.gcd(source.rate, rate)
        step = math.lcm(unit, params.clip_samples)
        length = step * max(1, round(PIECE_SECONDS * rate / step))
        margin = unit * math.ceil(MARGIN_SECONDS * rate / unit)
        frames = lambda samples: samples * source.rate // rate  # noqa: E731  exact
        total = math.ceil(source.frames * rate / source.rate)
        for start in range(0, total, length):
            skip = min(margin, start)
            pieces.append(Piece(index, audio_files.DECODE_SOUNDFILE, frames(start - skip),
                                frames(skip + length + margin), skip, length))
    return pieces


def model_lowpass(params):
    """The low-pass taps that bring params.input_rate to params.sample_rate."""
    return lowpass.design_lowpass(params.input_rate, params.decimation,
                                  params.lowpass_stopband_db, params.lowpass_transition)


def model_passband_edge(params):
    """Highest frequency (Hz) the model's low-pass keeps intact."""
    return lowpass.passband_edge(params.input_rate, params.decimation, params.lowpass_transition)


def _clips_graph(params):
    """Builds the per-piece graph function: a piece in, its non-silent clips out."""
    taps = model_lowpass(params)
    input_rate = params.input_rate
    silence_rms = 10.0 ** (params.silence_dbfs / 20)
    tone_samples = params.clip_samples * params.decimation
    max_frequency = model_passband_edge(params)

    def soundfile_or_reason(path, start, frames):
        try:
            return audio_files.decode_with_soundfile(os.fsdecode(path), input_rate, int(start),
                                                     int(frames)), b""
        except audio_files.BadAudio as reason:
            return np.zeros([0], np.float32), str(reason).encode()

    make_tone = {"tones": synthetic.harmonic_tone,
                 "held_notes": synthetic.held_notes}[params.synthetic_set]

    def tone(index):
        return make_tone(params.synthetic_seed, int(index), input_rate, tone_samples,
                         max_frequency)[0]

    def resample(audio, rate):
        return audio_files.resample(audio, int(rate), input_rate)

    def process(path, decoder, rate, index, start, frames, skip, keep):
        """Returns (index, clips [num_clips, clip_samples], decimated length, skip reason)."""
        def wav16():
            audio = tf.reduce_mean(tf.audio.decode_wav(tf.io.read_file(path)).audio, axis=1)
            audio = tf.cond(rate == input_rate, lambda: audio,
                            lambda: tf.numpy_function(resample, [audio, rate], tf.float32))
            return audio, tf.constant("")

        def with_soundfile():
            return tuple(tf.numpy_function(soundfile_or_reason, [path, start, frames],
                                           [tf.float32, tf.string]))

        def built_in():
            return tf.numpy_function(tone, [index], tf.float32), tf.constant("")

        audio, reason = tf.switch_case(decoder, [wav16, with_soundfile, built_in])
        audio = tf.ensure_shape(audio, [None])
        decimated = lowpass.decimate(audio, taps, params.decimation)
        decimated = decimated[skip:tf.where(keep < 0, tf.size(decimated), skip + keep)]
        count = tf.size(decimated) // params.clip_samples
        clips = tf.reshape(decimated[:count * params.clip_samples],
                           [count, params.clip_samples])
        clip_rms = tf.sqrt(tf.reduce_mean(tf.square(clips), axis=1))
        return index, tf.boolean_mask(clips, clip_rms > silence_rms), tf.size(decimated), reason

    return process


def _gain(parts, target_rms, band=None):
    """One gain for all the clips of a file (`parts` gives its [clips, clip_samples] arrays one
    at a time): they reach target_rms unless that would clip. With `band`, (taps, factor) of
    `lowpass.design_lowpass`, the level is that of the clips' low band (a cascade's sketch
    rate), the peak still that of the clips."""
    values = square_sum = peak = 0.0
    for part in parts():
        measured = lowpass.decimate(part, *band).numpy() if band and part.size else part
        values += measured.size
        square_sum += float(np.square(measured, dtype=np.float64).sum())
        peak = max(peak, float(np.abs(part).max()) if part.size else 0.0)
    level = math.sqrt(square_sum / values) if values else 0.0
    return np.float32(min(target_rms / level if level else 0.0, 1.0 / peak if peak else 0.0))


def _gain_band(params):
    """`_gain`'s band for params.gain_rate: (taps, factor), or None for the model's own rate."""
    if not params.gain_rate or params.gain_rate == params.sample_rate:
        return None
    factor = params.sample_rate // params.gain_rate
    return (lowpass.design_lowpass(params.sample_rate, factor, params.lowpass_stopband_db,
                                   params.lowpass_transition), factor)


def _list_sources(data_dir, params):
    """Returns (source name, files found, usable sources, skipped [{path, reason}])."""
    if data_dir is None:
        sources = [audio_files.Source(f"synthetic/tone_{i:05d}", audio_files.DECODE_SYNTHETIC,
                                      params.input_rate) for i in range(params.synthetic_tones)]
        return SYNTHETIC_SOURCE, [], sources, []
    if not os.path.isdir(data_dir):
        raise DataError(f"--data_dir={data_dir}: not an existing folder; point it at a folder of "
                        "audio files, or leave it out to use the built-in tones")
    source = os.path.abspath(data_dir)
    files = audio_files.find_audio_files(source)
    if not files:
        raise DataError(f"--data_dir={data_dir}: no audio files "
                        f"({' '.join(audio_files.AUDIO_EXTENSIONS)}) found in it or below it")
    usable, skipped = [], []
    for path in files:
        try:
            usable.append(audio_files.probe(path, params.input_rate))
        except audio_files.BadAudio as reason:
            skipped.append({"path": path, "reason": str(reason)})
    return source, files, usable, skipped


def _data_params(params, source):
    """The preprocessing params that shape the clips of `source` (the tones' own only for the
    built-in tones)."""
    return {name: value for name, value in params.group("data").items()
            if (source == SYNTHETIC_SOURCE or not name.startswith("synthetic_"))
            and not (name == "gain_rate" and value == 0)  # the caches made before them
            and not (name == "synthetic_set" and value == "tones")}


def _warn_skipped(skipped):
    for item in skipped:
        logging.warning("skipping %s: %s", item["path"], item["reason"])


def _decoded_pieces(sources, pieces, params):
    """The tf.data pipeline that decodes, low-passes and cuts every piece, in order: rows of
    (source index, clips [n, clip_samples], decimated length, skip reason)."""
    dataset = tf.data.Dataset.from_tensor_slices((
        # Bytes as the file system spells them: a name need not be valid UTF-8.
        np.array([os.fsencode(sources[p.source].path) for p in pieces], object),
        np.array([p.decoder for p in pieces], np.int32),
        np.array([sources[p.source].rate for p in pieces], np.int32),
        *[np.array([getattr(p, name) for p in pieces], dtype) for name, dtype in (
            ("source", np.int32), ("start", np.int64), ("frames", np.int64),
            ("skip", np.int32), ("keep", np.int32))]))
    return dataset.map(_clips_graph(params), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).prefetch(tf.data.AUTOTUNE)


def _gathered_files(rows, piece_counts, writer):
    """The pieces of each file gathered (they come one after another): yields (index, parts,
    clip count, decimated length, reason); parts are [clips, clip_samples] arrays, or for a
    long file the .npy files they wait in on disk, removed once the caller has used them."""
    try:
        for index, file_rows in itertools.groupby(rows, lambda row: row[0]):
            parts, clip_count, length, reasons = [], 0, 0, []
            try:
                for _, clips, decimated_length, reason in file_rows:
                    # A long file waits on disk, not in memory.
                    parts.append(writer.spill(clips) if piece_counts[index] > 1 else clips)
                    clip_count += len(clips)
                    length += decimated_length
                    reasons += [reason.decode()] if reason else []
                yield index, parts, clip_count, length, reasons[0] if reasons else ""
            finally:
                for part in parts:
                    if isinstance(part, str):
                        os.remove(part)
    except BaseException:
        rows = file_rows = None  # see _build: a traceback must not keep the iterator alive
        raise


def _skip_reason(clip_count, decimated_length, reason, params):
    """Why a decoded file is not used ("" when it is)."""
    if not reason and decimated_length < params.clip_samples:
        reason = (f"shorter than one clip ({decimated_length / params.sample_rate:.2f} s < "
                  f"{params.clip_samples / params.sample_rate:.2f} s)")
    if not reason and clip_count == 0:
        reason = f"silent (every clip below {params.silence_dbfs:g} dBFS)"
    return reason


class _SplitStatistics:
    """Files, clips and the sums the manifest's mean and variance come from, per split."""

    def __init__(self):
        self.splits = {split: {"files": 0, "clips": 0, "sum": 0.0, "square_sum": 0.0}
                       for split in cache.SPLITS}

    def add(self, split, clips):
        counts = self.splits[split]
        counts["clips"] += len(clips)
        counts["sum"] += float(clips.sum(dtype=np.float64))
        counts["square_sum"] += float(np.square(clips, dtype=np.float64).sum())


def _manifest(source, found, used, skipped, statistics, writer, label_names, input_seconds,
              validation, params):
    """The cache's manifest.json: what was used and skipped, the clips, their statistics."""
    counts = statistics.splits
    clip_seconds = params.clip_samples / params.sample_rate
    train_values = counts["train"]["clips"] * params.clip_samples
    mean = counts["train"]["sum"] / train_values
    total_clips = counts["train"]["clips"] + (counts["val"]["clips"]
                                              if counts["val"] is not counts["train"] else 0)
    return {
        "source": source,
        "files_found": found,
        "files_used": used,
        "files_skipped": sorted(skipped, key=lambda item: item["path"]),
        "clips": total_clips,
        "seconds": round(total_clips * clip_seconds, 3),
        "input_seconds": round(input_seconds, 3),
        "sample_rate": params.sample_rate,
        "clip_samples": params.clip_samples,
        "train_files": counts["train"]["files"],
        "train_clips": counts["train"]["clips"],
        "val_files": counts["val"]["files"],
        "val_clips": counts["val"]["clips"],
        "validation": validation,
        "train_variance": counts["train"]["square_sum"] / train_values - mean ** 2,
        "label_names": label_names,
        "label_clips": {label: writer.labels["train"].count(number)
                        for number, label in enumerate(label_names)},
        "params": _data_params(params, source),
    }


def _build(folder, source, files, sources, skipped, params):
    """Decodes every source, sets each file's gain, writes the clips and returns the
    manifest."""
    names = [s.path if source == SYNTHETIC_SOURCE else os.path.relpath(s.path, source)
             for s in sources]
    labels = [label_of(name) if source != SYNTHETIC_SOURCE else "" for name in names]
    label_names = sorted(set(labels))
    val_indices = _split(names, params.val_fraction)
    pieces = _pieces(sources, params)
    gain_band = _gain_band(params)
    statistics, input_seconds = _SplitStatistics(), 0.0
    writer = cache.CacheWriter(folder)
    rows = _decoded_pieces(sources, pieces, params).as_numpy_iterator()
    try:
        for index, parts, clip_count, length, reason in _gathered_files(
                rows, collections.Counter(piece.source for piece in pieces), writer):
            input_seconds += length / params.sample_rate
            reason = _skip_reason(clip_count, length, reason, params)
            if reason:
                item = {"path": sources[index].path, "reason": reason}
                skipped.append(item)
                _warn_skipped([item])
                continue
            def each_part(parts=parts):
                for part in parts:
                    yield np.load(part) if isinstance(part, str) else part

            gain = _gain(each_part, params.target_rms, gain_band)
            split = "val" if index in val_indices else "train"
            statistics.splits[split]["files"] += 1
            for part in each_part():
                writer.write(split, part * gain, label_names.index(labels[index]))
                statistics.add(split, part * gain)
    except BaseException:
        writer.abort()
        # The iterator's threads run numpy_function, which needs the GIL: kept alive by this
        # frame (the traceback holds it) until the interpreter's last garbage collection, it
        # deadlocks the exit. Ended here, it ends at once.
        rows = None
        raise
    counts = statistics.splits
    found = len(files) if files else len(sources)
    used = counts["train"]["files"] + counts["val"]["files"]
    described = source if source == SYNTHETIC_SOURCE else f"--data_dir={source}"
    validation = "held-out files"
    if counts["train"]["clips"] == 0 and counts["val"]["clips"] > 0:
        # Every usable file was drawn for validation: too few files to hold any out.
        writer.train_on_validation()
        counts["train"] = counts["val"]
        validation = "the training clips (too few usable files to hold one out)"
        logging.warning("%s: only %d usable file(s), all drawn for validation; training on "
                        "them, and validation loss comes from the training clips",
                        described, counts["val"]["files"])
    if counts["train"]["clips"] == 0:
        writer.abort()
        raise DataError(f"{described}: no usable audio ({found} files found, {len(skipped)} "
                        "skipped: see the warnings above)")
    manifest = _manifest(source, found, used, skipped, statistics, writer, label_names,
                         input_seconds, validation, params)
    writer.commit(manifest)
    return manifest


def prepare(params, data_dir=None, cache_dir=None):
    """Builds the clip cache for `data_dir` (built-in tones when None) unless it exists.

    Bad files are skipped with one warning line each; they never stop the run.

    Returns:
      ClipCache.
    Raises:
      DataError: the folder is missing or holds no usable audio.
    """
    cache_dir = cache_dir or default_cache_dir()
    source, files, sources, skipped = _list_sources(data_dir, params)
    data_params = _data_params(params, source)
    digests = cache.file_digests(files, cache_dir)
    key = cache.cache_key(source, digests, data_params)
    folder = os.path.join(cache_dir, key)
    if os.path.isdir(cache_dir):
        for stale in cache.remove_stale(cache_dir, source, digests):
            logging.info("removed %s: a stale clip cache", stale)
    manifest = cache.read_manifest(folder)
    if manifest is not None:
        _warn_skipped(manifest["files_skipped"])
        logging.info("using cached clips in %s", folder)
        return ClipCache(folder, manifest)
    _warn_skipped(skipped)
    if not sources:
        raise DataError(f"--data_dir={data_dir}: no usable audio ({len(skipped)} files, all "
                        "skipped: see the warnings above)")
    try:
        os.makedirs(cache_dir, exist_ok=True)
        logging.info("preprocessing %d files from %s into %s", len(sources), source, folder)
        return ClipCache(folder, _build(folder, source, files, sources, skipped, params))
    except OSError as error:  # the partial cache is already removed
        reason = error.strerror or first_line(error)[:200]
        raise DataError(f"--cache_dir={cache_dir}: cannot write the clip cache ({reason}); free "
                        "space or give a writable --cache_dir") from None


def _examples(clip_cache, split, params):
    """The clips as {"audio": [clip_samples, 1]}, with params.label_names also "labels" (int32,
    an index into them: every label of the clips must be one; train.py checks the data's
    folders)."""
    clips = cache.clip_dataset(clip_cache.folder, split, params.clip_samples)
    if not params.label_names:
        return clips.map(lambda clip: {"audio": clip})
    numbers = np.array([params.label_names.index(name)
                        for name in clip_cache.manifest["label_names"]], np.int32)
    labels = numbers[cache.clip_labels(clip_cache.folder, split)]
    return tf.data.Dataset.zip(clips, tf.data.Dataset.from_tensor_slices(labels)).map(
        lambda clip, label: {"audio": clip, "labels": label})


def condition_lowpass(params):
    """An upsampler's taps: the low-pass at its rate for params.upsample_from."""
    return lowpass.design_lowpass(params.sample_rate, params.upsample_factor,
                                  params.lowpass_stopband_db, params.lowpass_transition)


def condition_crop(params):
    """Samples cut from each end of an upsampler's training clip: its low band, made from the
    clip alone, is wrong near the ends (the filter sees zeros beyond them)."""
    return len(condition_lowpass(params)) if params.upsample_from else 0


def training_samples(params):
    """The length of the clips a model trains on: clip_samples, less an upsampler's crop."""
    return params.clip_samples - 2 * condition_crop(params)


def condition_of(audio, params):
    """What an upsampler is conditioned on: `audio` at its rate, FIR-decimated to
    params.upsample_from and FIR-interpolated back. float32 [batch, time, 1] -> the same."""
    low = lowpass.decimate(audio[..., 0], condition_lowpass(params), params.upsample_factor)
    return upsampled_condition(low[..., None], params)[:, :tf.shape(audio)[1]]


def band_limited(audio, params):
    """Audio at the model's rate, float32 [batch, time, 1], low-passed to the band of its
    training audio: the decimation filter's passband and stopband edges, applied at the model's
    rate. A model at the input rate trains on unfiltered audio: returned as it is."""
    if params.decimation == 1:
        return audio
    taps = lowpass.design_lowpass(params.sample_rate, 1, params.lowpass_stopband_db,
                                  params.lowpass_transition)
    return lowpass.decimate(audio[..., 0], taps, 1)[..., None]


def upsampled_condition(low, params):
    """Audio at params.upsample_from, float32 [batch, time, 1], FIR-interpolated to the
    upsampler's rate: [batch, time * upsample_factor, 1]. Training and generation share it."""
    return lowpass.interpolate(low[..., 0], condition_lowpass(params),
                               params.upsample_factor)[..., None]


def _upsampling_pairs(params):
    """For an upsampler, a batch of clips -> the same batch with "audio" cropped
    (`condition_crop`) and "condition", its low band (`condition_of`), cropped alike; the
    identity for other models."""
    if not params.upsample_from:
        return lambda batch: batch
    crop = condition_crop(params)

    def pair(batch):
        audio = batch["audio"]
        condition = condition_of(audio, params)
        return {**batch, "audio": audio[:, crop:-crop], "condition": condition[:, crop:-crop]}
    return pair


def train_dataset(clip_cache, params, seed=0):
    """Endless shuffled training batches.

    Returns:
      tf.data.Dataset of {"audio": float32 [batch_size, training_samples, 1]}, with
      params.label_names also "labels": int32 [batch_size], and for an upsampler "condition":
      float32 [batch_size, training_samples, 1], the clean low band (`condition_of`).
    """
    clips = _examples(clip_cache, "train", params)
    return (clips.shuffle(params.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .batch(params.batch_size, drop_remainder=True)
            .map(_upsampling_pairs(params), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def val_dataset(clip_cache, params, max_clips=VAL_CLIPS):
    """The validation clips, or at most `max_clips` of them spread evenly over the split (every
    k-th), in a fixed order: the same clips at every checkpoint, in bounded time.

    Returns:
      tf.data.Dataset of batches like `train_dataset`'s, of <= batch_size clips.
    """
    clips = _examples(clip_cache, "val", params)
    every = max(1, math.ceil(clip_cache.manifest["val_clips"] / max_clips))
    return (clips.shard(every, 0).batch(params.batch_size).map(_upsampling_pairs(params))
            .prefetch(tf.data.AUTOTUNE))


def load_audio(path, params):
    """One file as the model hears its training data: mono, brought to input_rate, low-passed
    and decimated to sample_rate, scaled as a training file is (to target_rms, measured on the
    gain_rate band, unless that would clip). For audio-to-audio generation (variations,
    continuation), at every stage of a cascade alike.

    Returns:
      float32 [time] at params.sample_rate.
    Raises:
      DataError: the file is missing or not usable audio.
    """
    try:
        audio_files.probe(path, params.input_rate)
        audio = audio_files.decode_with_soundfile(path, params.input_rate)
    except (audio_files.BadAudio, OSError) as reason:
        raise DataError(f"{path}: {first_line(reason)}; give an audio file (.wav .flac .ogg "
                        ".mp3 .au)") from None
    decimated = lowpass.decimate(audio, model_lowpass(params), params.decimation)
    decimated = decimated.numpy()
    return decimated * _gain(lambda: [decimated], params.target_rms, _gain_band(params))
