"""The yardstick for "does it sound like music": evaluate.py's distances on a fixed protocol,
calibrated by what known signals score against held-out music.

  python bench/calibrate.py --split=MUSIC/split --out=/tmp/yardstick [--clips=32 --seconds=10]
  python bench/calibrate.py --split=MUSIC/split --out=/tmp/yardstick --generated=FOLDER ...
  python bench/calibrate.py --split=MUSIC/split --out=/tmp/yardstick_2450 --rate=2450 ...

MUSIC/split is what `python -m data.soundtracks MUSIC` writes (train/ and heldout/, split by
whole track; MUSIC/tracks.tsv names each clip's track).
The held-out tracks are dealt alternately into two halves: `reference` (--clips excerpts of
--seconds from the middle of clips of the first half) is what every row is scored against,
`heldout` the same from the second half (disjoint tracks: the floor, what new music of the same
kind scores). Then: `train` (excerpts of training music: what a perfect model of the training
set scores), `train_20db` and `train_10db` (the same with white noise at that SNR),
`shaped_noise` (Gaussian noise with the training excerpts' average magnitude spectrum, random
phase: what a model that learned only the spectrum makes), `white_noise`, and
`steady_sines` (the training excerpts with a sine at a quarter of the band's rate 18 dB over
the spectrum around it, as an upsampler's whistle is: held_notes' whistle row). Each row gives
the distances and the held-note measure (evaluate.py's held_share, whistle_share, steady_hz).
Each --generated folder adds a row.

--rate is the band (7350 Hz, the single-rate model's, by default; 2450 or 1225 for a cascade's
sketch): every set, generated ones too, is brought to it as training audio is (decoded at
22050 Hz, the pipeline's FIR low-pass and decimation) and written to OUT/<row>/ at that rate;
then all are analysed at 7350 Hz, so every band is scored with the same 70 ms frames and mel
bands in Hz (the bands above the cutoff sit at evaluate.py's power floor in every set). A 7350 Hz
model's clips scored on the 2450 Hz yardstick are its low band, what a 2450 Hz sketch must beat.
Prints one JSON line per row and writes them to OUT/calibration.jsonl (images/make_figures.py
draws them as lines), and the band to OUT/yardstick.json (bench/recipe.py reads it).
"""

import argparse
import csv
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import evaluate  # noqa: E402
from data import lowpass  # noqa: E402
from data.audio_files import decode_with_soundfile, find_audio_files, write_wav  # noqa: E402
from params import BASE  # noqa: E402

ANALYSIS_RATE = BASE.sample_rate


def tracks_of(folder):
    """{track: sorted clip paths} for a split side, from data/soundtracks.py's tracks.tsv (two
    folders up)."""
    with open(os.path.join(folder, os.pardir, os.pardir, "tracks.tsv")) as file:
        track_of = {row["clip"]: f"{row['soundtrack']}/{row['track']}"
                    for row in csv.DictReader(file, delimiter="\t")}
    tracks = {}
    for path in sorted(find_audio_files(folder)):
        clip = os.path.relpath(path, folder)
        tracks.setdefault(track_of[clip], []).append(path)
    return tracks


def spread(paths, count):
    """`count` paths spread evenly over the list (all when there are fewer)."""
    if len(paths) <= count:
        return list(paths)
    return [paths[round(i * (len(paths) - 1) / (count - 1))] for i in range(count)]


def to_band(path, rate):
    """float32 [time] at `rate`: the file decoded at input_rate, then low-passed and decimated
    by the pipeline's FIR, as training audio is."""
    factor = BASE.input_rate // rate
    audio = decode_with_soundfile(path, BASE.input_rate)
    taps = lowpass.design_lowpass(BASE.input_rate, factor, BASE.lowpass_stopband_db,
                                  BASE.lowpass_transition)
    return lowpass.decimate(audio, taps, factor).numpy()


def excerpts(paths, count, seconds, rate):
    """[count, seconds * rate] float32 middle excerpts of `count` spread clips at `rate`'s band
    (clips shorter than that are skipped)."""
    length = round(seconds * rate)
    out = []
    for path in spread(paths, 2 * count):
        audio = to_band(path, rate)
        if len(audio) < length:
            continue
        start = (len(audio) - length) // 2
        out.append(audio[start:start + length])
        if len(out) == count:
            break
    return np.stack(out)


def with_noise(clips, snr_db, rng):
    rms = np.sqrt(np.mean(clips ** 2, axis=1, keepdims=True))
    return clips + rng.standard_normal(clips.shape) * rms * 10 ** (-snr_db / 20)


def shaped_noise(clips, rng):
    """Noise with the clips' average magnitude spectrum and RMS, random phases."""
    magnitude = np.mean(np.abs(np.fft.rfft(clips, axis=1)), axis=0)
    phases = np.exp(2j * np.pi * rng.random((len(clips), len(magnitude))))
    noise = np.fft.irfft(magnitude * phases, n=clips.shape[1], axis=1)
    return noise * np.sqrt(np.mean(clips ** 2) / np.mean(noise ** 2))


def with_whistle(clips, frequency, rate, over_db=18.0):
    """The clips with a steady sine at `frequency` whose power is `over_db` above that of the
    clips' own spectrum within +-60 Hz of it (per STFT bin)."""
    time = np.arange(clips.shape[1]) / rate
    spectrum = np.abs(np.fft.rfft(clips, axis=1)) ** 2 / clips.shape[1]
    bins = np.abs(np.fft.rfftfreq(clips.shape[1], 1 / rate) - frequency) <= 60
    # A sine of amplitude a puts a^2 n / 4 into its bin of a length-n transform.
    amplitude = np.sqrt(4 * spectrum[:, bins].mean(axis=1, keepdims=True) * 10 ** (over_db / 10))
    return clips + amplitude * np.sin(2 * np.pi * frequency * time)


def write_set(folder, clips, rate):
    os.makedirs(folder, exist_ok=True)
    peak = max(1.0, max(float(np.abs(clip).max()) for clip in clips))  # WAV holds +-1; level
    for i, clip in enumerate(clips):                                    # is not scored
        write_wav(os.path.join(folder, f"{i:03d}.wav"), clip / peak, rate)


def band_of(yardstick):
    """The rate OUT/yardstick.json says the yardstick in `yardstick` is at."""
    with open(os.path.join(yardstick, "yardstick.json")) as file:
        return json.load(file)["rate"]


def reference_features(yardstick):
    """evaluate.py's features of the yardstick's reference set."""
    return evaluate.folder_features(os.path.join(yardstick, "reference"), ANALYSIS_RATE)


def scores(folder, reference, rate):
    """evaluate.distances of the files of `folder` (at the band `rate`) to `reference`, rounded,
    and their held-note measure (evaluate.rounded_notes) at `rate` itself."""
    features = evaluate.folder_features(folder, ANALYSIS_RATE, notes_rate=rate)
    return {**{key: round(value, 4) for key, value in
               evaluate.distances(features, reference).items()},
            **evaluate.rounded_notes(features)}


def score_folder(folder, yardstick, reference=None):
    """Brings every file of `folder` to the yardstick's band (written to YARDSTICK/scored/
    <folder's name>/) and scores it against its reference (`scores`)."""
    rate = band_of(yardstick)
    banded = os.path.join(yardstick, "scored", os.path.basename(os.path.normpath(folder)))
    write_set(banded, [to_band(path, rate) for path in sorted(find_audio_files(folder))], rate)
    return scores(banded, reference or reference_features(yardstick), rate)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True,
                        help="data/soundtracks.py's split folder (MUSIC/split)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=BASE.sample_rate,
                        help="the band, in Hz: 22050 divided by an integer")
    parser.add_argument("--generated", action="append", default=[],
                        help="a folder of generated audio to score too (repeatable)")
    args = parser.parse_args()
    if args.rate <= 0 or BASE.input_rate % args.rate:
        parser.error(f"--rate must divide {BASE.input_rate}")
    rng = np.random.default_rng(0)
    heldout = tracks_of(os.path.join(args.split, "heldout"))
    keys = sorted(heldout, key=lambda key: hashlib.sha256(key.encode()).hexdigest())
    halves = [sum((heldout[key] for key in keys[side::2]), []) for side in (0, 1)]
    train = sum(tracks_of(os.path.join(args.split, "train")).values(), [])
    sets = {"reference": excerpts(halves[0], args.clips, args.seconds, args.rate),
            "heldout": excerpts(halves[1], args.clips, args.seconds, args.rate)}
    sets["train"] = excerpts(train, args.clips, args.seconds, args.rate)
    sets["train_20db"] = with_noise(sets["train"], 20, rng)
    sets["train_10db"] = with_noise(sets["train"], 10, rng)
    sets["shaped_noise"] = shaped_noise(sets["train"], rng)
    sets["white_noise"] = rng.standard_normal(sets["train"].shape) * 0.1
    sets["steady_sines"] = with_whistle(sets["train"], args.rate / 4, args.rate)
    for name, clips in sets.items():
        write_set(os.path.join(args.out, name), clips, args.rate)
    with open(os.path.join(args.out, "yardstick.json"), "w") as file:
        json.dump({"rate": args.rate, "analysis_rate": ANALYSIS_RATE, "clips": args.clips,
                   "seconds": args.seconds}, file)
    reference = reference_features(args.out)
    with open(os.path.join(args.out, "calibration.jsonl"), "w") as table:
        for name in [name for name in sets if name != "reference"] + args.generated:
            row = (scores(os.path.join(args.out, name), reference, args.rate) if name in sets
                   else score_folder(name, args.out, reference))
            line = json.dumps({"row": name, "rate": args.rate, **row})
            print(line, flush=True)
            table.write(line + "\n")


if __name__ == "__main__":
    main()
