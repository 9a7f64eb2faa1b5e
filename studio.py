"""A studio in the browser: generate, listen, vary and continue, without a terminal.

  python studio.py                                   # the shipped cascade, http://127.0.0.1:7860
  python studio.py --model_dir=runs/mine --port=7861

A local Gradio page. Pick a model (the shipped ones and every model dir under runs/), a length,
sampler, steps and seed, a label and guidance for a labelled model, and a mode: generate from
noise, a variation of an uploaded clip, its continuation, or a region of it drawn anew. Each
take runs exactly what `python generate.py` runs with the same settings (the page builds that
command line and hands it to generate.py's `run`: the same seed gives the same file), with a
progress bar fed by the sampler, then a player, the WAV and its spectrogram; the last takes stay
on the page. Takes are queued, one at a time. The server listens on 127.0.0.1 and writes only
under --work_dir (uploads and takes).
"""

import itertools
import logging
import os
import random
import sys
import threading

from absl import flags

import cli
from network import kernels

KERNELS = kernels.choose("generate") if __name__ == "__main__" else ("default", "")
cli.quiet_tensorflow()

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import soundfile  # noqa: E402

import generate  # noqa: E402
from diffusion import generation, samplers  # noqa: E402
from util import UserError, default_cache_dir  # noqa: E402

SHIPPED = "pretrained/soundtracks-cascade"
MODES = ("generate", "variation", "continuation", "inpainting")
TAKES_SHOWN = 4
# The inputs of a take, in the order the page (and Gradio's client, api_name "/run_take") sends
# them: the settings of generate_argv and whether to draw the seed at random.
TAKE_INPUTS = ("model_dir", "mode", "seconds", "sampler", "steps", "seed", "random_seed", "label",
               "guidance", "upload", "strength", "inpaint_start", "inpaint_end")
NO_LABEL = "(none)"

FLAGS = flags.FlagValues()
flags.DEFINE_string("model_dir", SHIPPED, "The model the page opens on.", flag_values=FLAGS)
flags.DEFINE_list("model_roots", ["pretrained", "runs"], "Folders searched for model dirs "
                  "(a params.json or a cascade.json) to offer on the page.", flag_values=FLAGS)
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (127.0.0.1: this machine only).",
                    flag_values=FLAGS)
flags.DEFINE_integer("port", 7860, "Port to listen on.", flag_values=FLAGS)
flags.DEFINE_string("work_dir", os.path.join(default_cache_dir(), "studio"), "The only folder "
                    "the server writes: uploads and takes.", flag_values=FLAGS)
cli.define_runtime_flags(FLAGS, distribute=False)


def find_models(roots):
    """Model dirs under `roots` (relative paths, sorted): folders holding params.json or
    cascade.json; a cascade's stages are not offered on their own."""
    found = []
    for root in roots:
        for folder, subfolders, files in os.walk(root):
            if "cascade.json" in files or "params.json" in files:
                found.append(os.path.normpath(folder))
                subfolders.clear()
            elif os.path.relpath(folder, root).count(os.sep) >= 2:
                subfolders.clear()  # model dirs sit at most three folders down
    return sorted(found)


def label_names(model_dir):
    """The labels a model (a cascade: its first stage) can generate; () for an unconditional
    one or a folder that is not a model."""
    try:
        return tuple(generation.stage_params(model_dir)[0][0].label_names)
    except (UserError, OSError, IndexError, ValueError):
        return ()


def generate_argv(model_dir, mode, seconds, sampler, steps, seed, label, guidance, upload,
                  strength, inpaint_start, inpaint_end, output_dir):
    """The generate.py command line of one take (without the program name)."""
    argv = [f"--model_dir={model_dir}", f"--sampler={sampler}", f"--seed={int(seed)}",
            f"--output_dir={output_dir}"]
    if steps:
        argv.append(f"--steps={int(steps)}")
    if label and label != NO_LABEL:
        argv += [f"--label={label}", f"--guidance={guidance:g}"]
    if mode != "generate" and not upload:
        raise UserError(f"{mode} needs a clip: upload one first")
    if mode == "variation":
        argv += [f"--init_audio={upload}", f"--strength={strength:g}"]
    elif mode == "continuation":
        argv += [f"--prompt_audio={upload}", f"--seconds={seconds:g}"]
    elif mode == "inpainting":
        argv += [f"--prompt_audio={upload}", f"--inpaint={inpaint_start:g}:{inpaint_end:g}"]
    else:
        argv.append(f"--seconds={seconds:g}")
    return argv


SPECTROGRAM_HEIGHT = 320  # pixels of frequency axis
SPECTROGRAM_MARGIN = 64   # pixels left of it for the frequency labels
# A dark-to-light colour map (anchors of matplotlib's "magma"): quiet is dark, loud is bright.
COLOURS = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109],
                    [252, 253, 191]], np.float64)


def spectrogram(path):
    """A WAV file's spectrogram as an RGB image [height, width, 3], uint8: the top 80 dB of
    its power in colour, low frequencies at the bottom, a frequency axis in kHz on the left."""
    from PIL import Image, ImageDraw
    audio, rate = soundfile.read(path, dtype="float32")
    window = 2 ** int(np.ceil(np.log2(0.046 * rate)))  # 46 ms: 1024 samples at 22050 Hz
    _, _, power = scipy.signal.spectrogram(audio, rate, nperseg=window, noverlap=window * 3 // 4)
    decibels = 10 * np.log10(power + 1e-10)
    level = np.clip((decibels - decibels.max() + 80) / 80, 0, 1)[::-1]  # [freq, frames]
    position = level * (len(COLOURS) - 1)
    low = np.minimum(position.astype(int), len(COLOURS) - 2)
    weight = (position - low)[..., None]
    rgb = ((1 - weight) * COLOURS[low] + weight * COLOURS[low + 1]).astype(np.uint8)
    width = max(600, min(1200, rgb.shape[1]))
    plot = Image.fromarray(rgb).resize((width, SPECTROGRAM_HEIGHT), Image.BILINEAR)
    image = Image.new("RGB", (SPECTROGRAM_MARGIN + width, SPECTROGRAM_HEIGHT + 8), "white")
    image.paste(plot, (SPECTROGRAM_MARGIN, 4))
    draw = ImageDraw.Draw(image)
    nyquist = rate / 2
    step = next(step for step in (250, 500, 1000, 2000, 5000) if nyquist / step <= 6)
    for frequency in np.arange(0, nyquist + 1, step):
        y = 4 + round((1 - frequency / nyquist) * (SPECTROGRAM_HEIGHT - 1))
        draw.line([(SPECTROGRAM_MARGIN - 6, y), (SPECTROGRAM_MARGIN - 1, y)], fill="black")
        draw.text((4, max(0, y - 6)), f"{frequency / 1000:g} kHz", fill="black")
    return np.asarray(image)


class Studio:
    """The page's work, apart from the page: takes numbered in a folder of their own."""

    def __init__(self, work_dir):
        self.work_dir = os.path.abspath(work_dir)
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()

    def take(self, argv_of_take, report=None):
        """Runs generate.py's `run` on one take's settings (generate_argv's arguments but the
        output folder, which is the take's own); returns the WAV's path. UserError for a
        mistake (a clip that is not audio, a label the model lacks, a clip too long)."""
        with self.lock:
            number = next(self.numbers)
        folder = os.path.join(self.work_dir, "takes", f"take{os.getpid()}-{number:04d}")
        args = generate.parse(["generate.py", *generate_argv(**argv_of_take, output_dir=folder)])
        return generate.run(args, report)[0]


def refused(error, upload=None):
    """A visitor's mistake (a UserError) as the page's message, a gr.Error that Gradio shows
    without printing a traceback; the terminal gets one `warning:` line. The upload's path in
    the studio's folder is shown as its file name."""
    import gradio as gr
    message = str(error).replace(upload, os.path.basename(upload)) if upload else str(error)
    print(f"warning: a take was refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def build_page(studio, model_dir, models):
    """The Gradio page (gr.Blocks) over `studio`, opening on `model_dir`."""
    import gradio as gr

    def labels_update(chosen):
        names = label_names(chosen)
        return (gr.update(choices=[NO_LABEL, *names], value=NO_LABEL, visible=bool(names)),
                gr.update(visible=bool(names)))

    def run_take(chosen, mode, seconds, sampler, steps, seed, random_seed, label, guidance,
                 upload, strength, inpaint_start, inpaint_end, history, progress=gr.Progress()):
        if random_seed:
            seed = random.randrange(2 ** 31)
        settings = dict(model_dir=chosen, mode=mode, seconds=seconds, sampler=sampler,
                        steps=steps, seed=seed, label=label, guidance=guidance, upload=upload,
                        strength=strength, inpaint_start=inpaint_start, inpaint_end=inpaint_end)
        try:
            path = studio.take(settings, lambda fraction, line: progress(fraction, desc=line))
        except UserError as error:  # one message on the page, one line here; the server goes on
            raise refused(error, upload) from None
        caption = f"{os.path.basename(chosen)}, {mode}, {sampler}, seed {int(seed)}"
        history = [(path, caption), *history][:TAKES_SHOWN]
        shown = [gr.update(value=take, label=text, visible=True) for take, text in history]
        shown += [gr.update(value=None, visible=False)] * (TAKES_SHOWN - len(history))
        return [path, path, spectrogram(path), int(seed), history, *shown]

    with gr.Blocks(title="music-diffwave studio") as page:
        gr.Markdown("# music-diffwave studio\nGenerate music with a DiffWave model, vary or "
                    "continue a clip of yours. Every take is what `python generate.py` writes "
                    "with the same settings.")
        with gr.Row():
            with gr.Column():
                chosen = gr.Dropdown(models, value=model_dir, label="model",
                                     allow_custom_value=True)
                mode = gr.Radio(list(MODES), value="generate", label="mode", elem_id="mode")
                upload = gr.Audio(type="filepath", sources=["upload"], label="your clip "
                                  "(variation, continuation, inpainting)", elem_id="upload")
                seconds = gr.Number(10, label="seconds (generate, continuation)", minimum=0.1)
                strength = gr.Slider(0, 1, 0.5, label="strength (variation: how much is "
                                     "redrawn)")
                with gr.Row():
                    inpaint_start = gr.Number(0, label="inpaint from (s)", minimum=0)
                    inpaint_end = gr.Number(1, label="inpaint to (s)", minimum=0)
                with gr.Row():
                    sampler = gr.Dropdown(list(samplers.SAMPLERS), value="fast", label="sampler")
                    steps = gr.Number(0, label="steps (0: the sampler's default)", precision=0,
                                      minimum=0)
                with gr.Row():
                    seed = gr.Number(0, label="seed", precision=0, minimum=0)
                    random_seed = gr.Checkbox(False, label="random seed")
                names = label_names(model_dir)
                label = gr.Dropdown([NO_LABEL, *names], value=NO_LABEL, label="label",
                                    visible=bool(names))
                guidance = gr.Slider(0, 6, 1, label="guidance", visible=bool(names))
                button = gr.Button("generate", variant="primary", elem_id="generate")
            with gr.Column():
                audio = gr.Audio(label="take", type="filepath", interactive=False,
                                 elem_id="take")
                download = gr.File(label="WAV", interactive=False)
                image = gr.Image(label="spectrogram", interactive=False)
                history = gr.State([])
                takes = [gr.Audio(visible=False, interactive=False, type="filepath")
                         for _ in range(TAKES_SHOWN)]
        chosen.change(labels_update, chosen, [label, guidance])
        button.click(run_take, [chosen, mode, seconds, sampler, steps, seed, random_seed, label,
                                guidance, upload, strength, inpaint_start, inpaint_end, history],
                     [audio, download, image, seed, history, *takes])
    return page.queue(default_concurrency_limit=1)  # takes one at a time, in order


def serve():
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    # Before Gradio loads: its uploads go to the studio's folder, and nothing phones home.
    os.environ["GRADIO_TEMP_DIR"] = os.path.join(os.path.abspath(FLAGS.work_dir), "uploads")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own requests, each a line
    cli.configure_runtime(FLAGS)
    models = find_models(FLAGS.model_roots)
    if FLAGS.model_dir not in models:
        generation.stage_params(FLAGS.model_dir)  # refuses what is not a model, in one line
        models.insert(0, FLAGS.model_dir)
    page = build_page(Studio(FLAGS.work_dir), FLAGS.model_dir, models)
    print("\n".join(filter(None, [KERNELS[1], f"models: {', '.join(models)}",
                                  f"studio: http://{FLAGS.host}:{FLAGS.port}"])), flush=True)
    page.launch(server_name=FLAGS.host, server_port=FLAGS.port, share=False,
                allowed_paths=[os.path.abspath(FLAGS.work_dir)], quiet=True)


def main(argv):
    return cli.main(serve, FLAGS, argv, "stopped")


if __name__ == "__main__":
    cli.run(main)
