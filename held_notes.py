"""Held notes: how much of a clip's energy sits in partials that keep their pitch.

A held note is a horizontal line of a spectrogram. The measure finds it the way an eye does:

  1. STFT frames of `window_s` every `hop_s` (power spectra, Hann window);
  2. peaks: bins that are local maxima, stand `peak_db` above the median of their
     +-`neighbourhood_hz` neighbourhood and lie within `floor_db` of the clip's loudest bin;
  3. tracks: each peak continues the track of the previous frame whose last peak is nearest
     in frequency, if within max(`jump_bins` bins, `jump_fraction` of the frequency) (vibrato
     moves a partial a few per cent between frames and stays one track);
  4. held-note share: the energy of the peaks (their bin +-1) on tracks that hold, over the
     clip's whole energy. A track holds where it is within `hold_db` of its loudest frame, and
     counts if that lasts at least `min_held_s` (a drum's pitched decay falls 20 dB in well
     under 0.1 s; a plucked or struck note takes a second or more). A steady whistle, a track
     that spans at least `whistle_fraction` of a clip of at least `whistle_min_s` within
     `whistle_spread_bins` of one frequency, counts as whistle share instead.

White noise has peaks but no track lasts 0.2 s, so it scores about 0; a held sine scores about
0.9 (its window's side lobes are the rest). A folder's `steady_hz` lists frequencies that are
peaks in most frames of nearly every clip: a note of music is a peak in some clips only, a
network's own whistle in all of them.
"""

import dataclasses

import numpy as np
import scipy.ndimage
import scipy.signal


@dataclasses.dataclass(frozen=True)
class HeldNoteParams:
    window_s: float = 0.1         # 10 Hz bins: partials of low notes stay apart
    hop_s: float = 0.025
    peak_db: float = 8.0          # over the neighbourhood's median
    neighbourhood_hz: float = 60.0
    floor_db: float = 70.0        # below the clip's loudest bin: silence has no notes
    jump_bins: int = 2
    jump_fraction: float = 0.03
    min_held_s: float = 0.2
    hold_db: float = 20.0         # a track holds while within this of its loudest frame
    whistle_min_s: float = 4.0
    whistle_fraction: float = 0.8
    whistle_spread_bins: int = 2
    steady_frames: float = 0.5    # steady_hz: a peak in this share of a clip's frames ...
    steady_clips: float = 0.9     # ... in this share of the clips


HELD_NOTES = HeldNoteParams()


def spectrogram(audio, rate, params=HELD_NOTES):
    """(frequencies [bins] Hz, power [frames, bins]) of float audio [time]."""
    window = max(8, round(params.window_s * rate))
    hop = max(1, round(params.hop_s * rate))
    frequencies, _, stft = scipy.signal.stft(audio, rate, "hann", window, window - hop,
                                             boundary=None, padded=False)
    return frequencies, np.abs(stft.T) ** 2


def peaks(power, bin_hz, params=HELD_NOTES):
    """Bool [frames, bins]: the spectral peaks of each frame (step 2 of the module doc)."""
    radius = max(1, round(params.neighbourhood_hz / bin_hz))
    floor = power.max() * 10 ** (-params.floor_db / 10) if power.size else 0.0
    neighbourhood = scipy.ndimage.median_filter(power, size=(1, 2 * radius + 1), mode="nearest")
    local_max = np.zeros_like(power, bool)
    local_max[:, 1:-1] = (power[:, 1:-1] > power[:, :-2]) & (power[:, 1:-1] >= power[:, 2:])
    return (local_max & (power > neighbourhood * 10 ** (params.peak_db / 10))
            & (power > floor))


def tracks(peak_mask, frequencies, params=HELD_NOTES):
    """The peaks joined frame to frame: a list of [(frame, bin), ...] (step 3). Pairs of an
    open track and a peak are taken nearest first, so a stray peak near a held partial cannot
    take its track."""
    finished, open_tracks = [], []  # open: tracks whose last peak is in the previous frame
    bin_hz = frequencies[1] - frequencies[0]
    for frame, row in enumerate(peak_mask):
        found = np.flatnonzero(row)
        ends = np.array([track[-1][1] for track in open_tracks], int)
        tolerance = np.maximum(params.jump_bins, params.jump_fraction * frequencies[found] / bin_hz)
        distance = np.abs(ends[:, None] - found[None, :])
        pairs = np.argwhere(distance <= tolerance[None, :])
        pairs = pairs[np.argsort(distance[pairs[:, 0], pairs[:, 1]], kind="stable")]
        continued, taken_tracks, taken_peaks = [], set(), set()
        for track_index, peak_index in pairs:
            if track_index in taken_tracks or peak_index in taken_peaks:
                continue
            taken_tracks.add(track_index)
            taken_peaks.add(peak_index)
            continued.append(open_tracks[track_index] + [(frame, found[peak_index])])
        continued += [[(frame, peak)] for index, peak in enumerate(found)
                      if index not in taken_peaks]
        finished += [track for index, track in enumerate(open_tracks) if index not in taken_tracks]
        open_tracks = continued
    return finished + open_tracks


def clip_measure(audio, rate, params=HELD_NOTES):
    """{"held_share", "whistle_share"} of float audio [time] at `rate` (step 4), with
    "peak_frames", float [bins], the share of frames in which each bin (or a neighbour) is a
    peak, and "frequencies", float [bins] Hz, the bins' frequencies."""
    frequencies, power = spectrogram(np.asarray(audio, np.float64), rate, params)
    total = power.sum()
    mask = peaks(power, frequencies[1], params)
    frames = len(power)
    held = whistle = 0.0
    for track in tracks(mask, frequencies, params):
        energies = np.array([power[frame, max(0, peak - 1):peak + 2].sum()
                             for frame, peak in track])
        holding = energies >= energies.max() * 10 ** (-params.hold_db / 10)
        if holding.sum() * params.hop_s < params.min_held_s:
            continue
        bins = [peak for _, peak in track]
        if (frames * params.hop_s >= params.whistle_min_s
                and len(track) >= params.whistle_fraction * frames
                and max(bins) - min(bins) <= params.whistle_spread_bins):
            whistle += energies[holding].sum()
        else:
            held += energies[holding].sum()
    share = (lambda energy: float(energy / total)) if total > 0 else (lambda energy: 0.0)
    return {"held_share": share(held), "whistle_share": share(whistle),
            # Peaks wander by a bin between frames: a bin or its neighbour counts.
            "peak_frames": (scipy.ndimage.binary_dilation(mask, np.ones((1, 3), bool)).mean(0)
                            if frames else np.zeros(power.shape[1])),
            "frequencies": frequencies}


def summary(measured, params=HELD_NOTES):
    """A folder's measure from its clips' `clip_measure` results: the mean held and whistle
    shares, and `steady_hz`, the frequencies (Hz) that are peaks (give or take a bin) in at least
    steady_frames of the frames of at least steady_clips of the clips (of the clips analysed
    with the same bins, which clips of at least window_s at one rate are)."""
    result = {"held_share": float(np.mean([m["held_share"] for m in measured])),
              "whistle_share": float(np.mean([m["whistle_share"] for m in measured])),
              "steady_hz": []}
    if measured and len({len(m["frequencies"]) for m in measured}) == 1:
        steady = np.mean([m["peak_frames"] >= params.steady_frames for m in measured], axis=0)
        candidates = np.flatnonzero(steady >= params.steady_clips)
        # One frequency per run of adjacent bins.
        runs = np.split(candidates, np.flatnonzero(np.diff(candidates) > 1) + 1)
        frequencies = measured[0]["frequencies"]
        result["steady_hz"] = [round(float(frequencies[run].mean()), 1) for run in runs if len(run)]
    return result


def folder_measure(clips, rate, params=HELD_NOTES):
    """`summary` of float clips [time] at `rate`."""
    return summary([clip_measure(clip, rate, params) for clip in clips], params)
