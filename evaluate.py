"""Scores a folder of generated audio against a folder of real audio; prints one JSON object.

  python evaluate.py --generated=out --reference=/path/to/genres_original

Every file is decoded to mono at --sample_rate and brought to the training data's RMS (level is
not what is scored), cut into STFT frames, and described per frame by its log-mel spectrum
(64 bands) and by 20 MFCCs plus their deltas. The two folders' frames are then compared:

  frechet_mel, frechet_mfcc  Frechet distance between Gaussians fitted to each side's frames:
                             |mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^1/2); 0 when equal.
  kid, kid_std               kernel distance: unbiased MMD^2 with the cubic polynomial kernel
                             on MFCC+delta frames centred and scaled by the reference, averaged
                             over random subsets, with its standard deviation across them.

Both depend on how much audio each side has: compare runs of equal sizes (a warning says when
the sides differ by more than 2x). Beside them, for each folder, what a listener hears as notes
(held_notes.py): held_share, the share of energy in partials that hold their pitch for 0.2 s
or more; whistle_share, that in steady tones spanning whole clips; steady_hz, frequencies that
are a peak in nearly every clip. numpy and scipy only; no weights are downloaded.
"""

import json
import os
import sys

import numpy as np
import scipy.fft
from absl import flags

import cli
import held_notes
from data.audio_files import BadAudio, decode_with_soundfile, find_audio_files, probe
from params import BASE, UserError

FRAME = 512  # 70 ms at 7350 Hz
HOP = 256
MEL_BANDS = 64
MFCCS = 20
# Band power floor, about 45 dB below a band of noise at the training RMS: a dynamic range
# like an ear's, so near-silent bands do not dominate the statistics.
POWER_FLOOR = 1e-4
SILENT_RMS = 10 ** (BASE.silence_dbfs / 20)
FEW_FRAMES = 4 * MEL_BANDS  # fewer frames than this: a rough covariance (size_warning)


def define_flags(flag_values):
    """The reference and analysis flags (search_schedule.py shares them)."""
    flags.DEFINE_string("reference", None, "Folder of real audio to compare with.",
                        flag_values=flag_values)
    flags.DEFINE_integer("sample_rate", BASE.sample_rate, "Hz both sides are analysed at "
                         "(the model's rate by default; higher-rate files are resampled).",
                         flag_values=flag_values)
    flags.DEFINE_integer("kid_subsets", 20, "Random subsets the kernel distance averages over.",
                         flag_values=flag_values)
    flags.DEFINE_integer("kid_subset_size", 1000, "Frames per side in each subset.",
                         flag_values=flag_values)


def check_flags(flag_values, *required):
    for name in required:
        if not flag_values[name].value:
            raise UserError(f"--{name} is required (a folder of audio files)")
    if (flag_values.sample_rate <= 0 or flag_values.kid_subsets <= 0
            or flag_values.kid_subset_size <= 1):
        raise UserError("--sample_rate and --kid_subsets must be > 0, --kid_subset_size > 1")


FLAGS = flags.FlagValues()
flags.DEFINE_string("generated", None, "Folder of generated audio (searched recursively).",
                    flag_values=FLAGS)
define_flags(FLAGS)


def mel_filterbank(rate, bins, bands=MEL_BANDS):
    """Triangular filters evenly spaced on the mel scale (HTK formula) from 0 Hz to Nyquist.

    Returns float64 [bins, bands], to multiply a power spectrum [frames, bins] by.
    """
    mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
    edges_hz = 700 * (10 ** (np.linspace(0, mel(rate / 2), bands + 2) / 2595) - 1)
    bin_hz = np.linspace(0, rate / 2, bins)
    low, centre, high = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bin_hz[:, None] - low) / (centre - low)
    falling = (high - bin_hz[:, None]) / (high - centre)
    return np.maximum(0, np.minimum(rising, falling))


def frame_features(audio, rate):
    """Per-frame features of one clip.

    Args:
      audio: float32 [time], at least one frame long.
    Returns:
      (log-mel float64 [frames, 64] in dB, MFCC+delta float64 [frames, 40]).
    """
    frames = np.lib.stride_tricks.sliding_window_view(audio, FRAME)[::HOP]
    power = np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=1)) ** 2
    log_mel = 10 * np.log10(power @ mel_filterbank(rate, FRAME // 2 + 1) + POWER_FLOOR)
    mfcc = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, :MFCCS]
    delta = np.gradient(mfcc, axis=0) if len(mfcc) > 1 else np.zeros_like(mfcc)
    return log_mel, np.concatenate([mfcc, delta], axis=1)


def clip_features(audio, rate):
    """`frame_features` of one clip brought to the training RMS (level is not scored).

    Raises:
      BadAudio: silent, or shorter than one frame.
    """
    rms = float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0
    if len(audio) < FRAME or rms < SILENT_RMS:
        raise BadAudio("silent or shorter than one frame")
    return frame_features(audio * (BASE.target_rms / rms), rate)


def pooled(features, seconds):
    """One side's frames: a list of `clip_features` results and its total seconds -> the dict
    `distances` takes ("mel" [frames, 64], "mfcc" [frames, 40], "clips", "seconds")."""
    return {"mel": np.concatenate([mel for mel, _ in features]),
            "mfcc": np.concatenate([mfcc for _, mfcc in features]), "clips": len(features),
            "seconds": seconds}


def clips_features(clips, rate):
    """The pooled frames of generated clips, float [n, time] clipped to [-1, 1]; silent clips are
    left out. None when every clip is silent."""
    features = []
    for clip in np.clip(clips, -1, 1):
        try:
            features.append(clip_features(clip, rate))
        except BadAudio:
            continue
    return pooled(features, len(features) * clips.shape[1] / rate) if features else None


def folder_features(folder, rate, warn=lambda message: print(message, file=sys.stderr),
                    notes_rate=None):
    """The pooled frames of every usable file under `folder`, and its held-note measure
    (held_notes.summary), taken at `notes_rate` when given (a band's own rate: analysed above
    it, a resampler's faint images would be peaks over the band's silence), else at `rate`.

    Raises:
      UserError: no folder, or no usable audio in it.
    """
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: not an existing folder")
    paths = find_audio_files(folder)
    features, notes, seconds = [], [], 0.0
    for path in paths:
        try:
            probe(path, rate)
            audio = decode_with_soundfile(path, rate)
            features.append(clip_features(audio, rate))
        except BadAudio as error:
            warn(f"warning: skipped {path}: {error}")
            continue
        if notes_rate and notes_rate != rate:
            audio = decode_with_soundfile(path, notes_rate)
        notes.append(held_notes.clip_measure(audio, notes_rate or rate))
        seconds += len(audio) / rate
    if not features:
        raise UserError(f"{folder}: no usable audio files ({len(paths)} found); give a folder "
                        f"of .wav/.flac/.ogg/.mp3/.au files")
    return {**pooled(features, seconds), "held_notes": held_notes.summary(notes)}


def frechet_distance(x, y):
    """Frechet distance between Gaussians fitted to the rows of x and of y ([n, d] each)."""
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    # Tr((S_x S_y)^1/2) = Tr((S_x^1/2 S_y S_x^1/2)^1/2), a symmetric form with real eigenvalues;
    # S_x^1/2 from its eigendecomposition, exact for a covariance even when singular (few frames).
    values, vectors = np.linalg.eigh(cov_x)
    root_x = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    eigenvalues = np.linalg.eigvalsh(root_x @ cov_y @ root_x)
    cross = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    distance = np.sum((mean_x - mean_y) ** 2) + np.trace(cov_x) + np.trace(cov_y) - 2 * cross
    return max(0.0, float(distance))  # >= 0; rounding can leave -1e-10 for equal inputs


def kernel_distance(x, y, subsets=20, subset_size=1000, seed=0):
    """KID: the unbiased MMD^2 between rows of x and y under k(a, b) = (a.b / d + 1)^3,
    averaged over random subsets of up to subset_size rows per side (at most half of each side,
    so that the subsets differ and the spread means something). Returns (mean, std)."""
    rng = np.random.default_rng(seed)
    size = max(2, min(subset_size, len(x) // 2, len(y) // 2))
    kernel = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731
    off_diagonal_mean = lambda k: (k.sum() - np.trace(k)) / (size * (size - 1))  # noqa: E731
    estimates = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), size, replace=False)]
        b = y[rng.choice(len(y), size, replace=False)]
        estimates.append(off_diagonal_mean(kernel(a, a)) + off_diagonal_mean(kernel(b, b))
                         - 2 * kernel(a, b).mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def distances(generated, reference, kid_subsets=20, kid_subset_size=1000):
    """The scores of two `folder_features` results, as evaluate.py prints them."""
    # Centred on the reference and divided by one overall spread, not per dimension: that would
    # blow up the quiet dimensions' noise to the size of the loud ones'.
    mean, std = reference["mfcc"].mean(axis=0), reference["mfcc"].std() + 1e-8
    kid, kid_std = kernel_distance((generated["mfcc"] - mean) / std,
                                   (reference["mfcc"] - mean) / std, kid_subsets, kid_subset_size)
    return {"frechet_mel": frechet_distance(generated["mel"], reference["mel"]),
            "frechet_mfcc": frechet_distance(generated["mfcc"], reference["mfcc"]),
            "kid": kid, "kid_std": kid_std}


def seam_ratios(audio, boundary, kept, frame=HOP):
    """Whether a boundary between kept and generated audio clicks, against the kept audio's own
    statistics.

    Args:
      audio: float [time], the output; boundary: its first sample after the seam.
      kept: float [time'], the kept audio alone (the input's region the output keeps).
    Returns:
      (jump, spectral): the seam's sample-to-sample step |x[b] - x[b-1]|, and its log-spectral
      distance (dB) between the `frame` samples before and after it, each over the 99th
      percentile of the same in `kept` (at every sample; every frame / 4 samples). Up to about
      1 the seam is like any moment of the kept audio; a click or a change of sound is several.
    """
    audio, kept = np.asarray(audio, np.float64), np.asarray(kept, np.float64)

    def change(signal, point):  # dB distance between the spectra either side of `point`
        before, after = (np.abs(np.fft.rfft(signal[low:low + frame] * np.hanning(frame))) ** 2
                         for low in (point - frame, point))
        return np.sqrt(np.mean(np.square(10 * np.log10((before + POWER_FLOOR)
                                                       / (after + POWER_FLOOR)))))
    changes = [change(kept, point) for point in range(frame, len(kept) - frame + 1, frame // 4)]
    jump = abs(audio[boundary] - audio[boundary - 1]) / np.percentile(np.abs(np.diff(kept)), 99)
    return jump, change(audio, boundary) / np.percentile(changes, 99) if changes else np.nan


def rounded_notes(features):
    """A `folder_features` result's held-note measure, shares rounded for printing."""
    notes = features["held_notes"]
    return {"held_share": round(notes["held_share"], 4),
            "whistle_share": round(notes["whistle_share"], 4), "steady_hz": notes["steady_hz"]}


def size_warning(generated, reference):
    """A warning line when a side has too few frames for its covariances, or when the two
    sides' clip counts or durations differ by more than 2x."""
    for name, side in (("generated", generated), ("reference", reference)):
        if len(side["mel"]) < FEW_FRAMES:
            return (f"warning: the {name} side has {len(side['mel'])} frames, fewer than "
                    f"{FEW_FRAMES}: its {MEL_BANDS}-band covariance is poorly estimated and the "
                    "Frechet distances are rough; give more or longer clips")
    for key in ("clips", "seconds"):
        sizes = generated[key], reference[key]
        if max(sizes) > 2 * min(sizes):
            return (f"warning: the sides differ in size ({generated['clips']} clips, "
                    f"{generated['seconds']:.0f} s generated; {reference['clips']} clips, "
                    f"{reference['seconds']:.0f} s reference); Frechet distances shrink as "
                    "samples grow, so compare only runs of equal sizes")
    return None


def evaluate():
    check_flags(FLAGS, "generated", "reference")
    generated = folder_features(FLAGS.generated, FLAGS.sample_rate)
    reference = folder_features(FLAGS.reference, FLAGS.sample_rate)
    warning = size_warning(generated, reference)
    if warning:
        print(warning, file=sys.stderr)
    result = distances(generated, reference, FLAGS.kid_subsets, FLAGS.kid_subset_size)
    result = {name: round(value, 6) for name, value in result.items()}
    for name, side in (("generated", generated), ("reference", reference)):
        result[name] = {"folder": FLAGS[name].value, "clips": side["clips"],
                        "seconds": round(side["seconds"], 2), "frames": len(side["mel"]),
                        **rounded_notes(side)}
    result["sample_rate"] = FLAGS.sample_rate
    print(json.dumps(result))


def main(argv):
    """The command with argv (`[program, flags...]`) in this process; returns its exit status."""
    return cli.main(evaluate, FLAGS, argv, "interrupted; nothing was written")


if __name__ == "__main__":
    cli.run(main)
