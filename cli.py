"""What the commands share: a quiet TensorFlow start-up, the flags for params, data and how the
network runs, one-line errors and help.

Library modules (params, data, network, diffusion) take arguments; only the commands and this
module know about flags. A command calls `quiet_tensorflow()` (after `kernels.choose`, which
must run before TensorFlow loads) before anything imports TensorFlow, defines its flags in its
own `flags.FlagValues` (so that several commands can be imported into one process, as the tests
do), has a `main(argv)` that returns `cli.main(command, FLAGS, argv, ...)`, and ends with
`cli.run(main)`. What imports TensorFlow is imported inside the functions that need it, so that
importing this module loads none of it.
"""

import dataclasses
import faulthandler
import functools
import logging
import os
import sys

from absl import flags, logging as absl_logging

import params as params_lib
from network.kernels import KERNELS, PRECISIONS

HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


@functools.cache  # once per process, however many of its modules call it on import
def quiet_tensorflow():
    """Imports TensorFlow and finds its devices with file descriptor 2 sent to /dev/null.

    TensorFlow 2.21 prints start-up lines from C++ (oneDNN, CUDA probing) that
    TF_CPP_MIN_LOG_LEVEL no longer silences; they would bury our one-line messages. Level 3
    also hides C++ error lines such as oneDNN's "supports DT_STRING only on platforms with
    AVX-512" on every audio summary (failures reach Python as exceptions anyway).
    TF_CPP_MIN_LOG_LEVEL=0 shows them all again.
    """
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") == "0":
        import tensorflow  # noqa: F401
        return
    # TensorFlow's Python-side INFO lines too (one per checkpoint write).
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    # Parts of TensorFlow log through absl's logger, which also carries our own INFO lines.
    logging.getLogger("absl").addFilter(
        lambda record: record.levelno >= logging.WARNING
        or f"{os.sep}tensorflow{os.sep}" not in record.pathname)
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow
        tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


# --- flags -------------------------------------------------------------------------------

_FLAG_DEFINERS = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
                  str: flags.DEFINE_string, bool: flags.DEFINE_boolean}


# Every Params field has a flag but label_names, which training reads from the data.
FLAG_FIELDS = [field for field in dataclasses.fields(params_lib.Params)
               if field.name != "label_names"]


def define_params_flags(flag_values):
    """Defines `--preset` plus one optional override flag per `Params` field."""
    flags.DEFINE_string("preset", "base",
                        f"Hyperparameter preset: {', '.join(params_lib.PRESETS)}.",
                        flag_values=flag_values)
    for field in FLAG_FIELDS:
        _FLAG_DEFINERS[type(field.default)](
            field.name, None, f"Override the preset's {field.name}: {field.metadata['doc']}",
            flag_values=flag_values)


def params_overrides(flag_values):
    """{field: value} for every `Params` field flag given on the command line."""
    return {field.name: flag_values[field.name].value
            for field in FLAG_FIELDS if flag_values[field.name].present}


def params_from_flags(flag_values):
    """The preset chosen by `--preset`, with every field flag that was given applied."""
    return params_lib.preset(flag_values.preset, **params_overrides(flag_values))


def define_data_flags(flag_values):
    """`--data_dir` and `--cache_dir`, for every command that reads audio."""
    flags.DEFINE_string("data_dir", None, "Folder searched recursively for .wav .au .flac .ogg "
                        ".mp3 files; leave out to use the built-in synthetic tones.",
                        flag_values=flag_values)
    flags.DEFINE_string("cache_dir", None, "Where preprocessed clips are cached (default "
                        "$XDG_CACHE_HOME/music-diffwave or ~/.cache/music-diffwave).",
                        flag_values=flag_values)


def define_runtime_flags(flag_values, distribute):
    """Thread, precision, kernel and XLA flags; `--strategy` too when `distribute`."""
    from network.conv_kernels import DILATED_CONVS
    from network.runtime import STRATEGIES
    flags.DEFINE_enum("precision", "float32", PRECISIONS,
                      "Compute dtype of the network: float32, or Keras mixed precision "
                      "(float32 weights; mixed_float16 adds loss scaling). The diffusion math, "
                      "schedule and loss stay float32. mixed_bfloat16 trains ~1.7x faster on "
                      "CPUs with AMX (Xeon 4th gen+); mixed_float16 is for GPUs.",
                      flag_values=flag_values)
    flags.DEFINE_integer("intra_op_threads", 0, "Threads inside one op (a convolution); 0 lets "
                         "TensorFlow use every core, the fastest setting measured on CPU.",
                         flag_values=flag_values)
    flags.DEFINE_integer("inter_op_threads", 0, "Ops run side by side; 0 lets TensorFlow "
                         "choose.", flag_values=flag_values)
    flags.DEFINE_enum("dilated_conv", "auto", ("auto",) + DILATED_CONVS,
                      "How dilated convolutions run: direct (tf.nn.conv1d with dilations; "
                      "trains only where oneDNN or a GPU is on), folded (time folded so that "
                      "an undilated convolution does the same; trains on every CPU), or auto: "
                      "direct where it can train and for generation, else folded.",
                      flag_values=flag_values)
    flags.DEFINE_enum("kernels", "auto", KERNELS,
                      "CPU kernels: onednn, stock (TensorFlow's own), or auto: whichever ran "
                      "this job faster on this CPU, measured once and remembered in the cache "
                      "folder (network/kernels.py). Overrides TF_ENABLE_ONEDNN_OPTS.",
                      flag_values=flag_values)
    flags.DEFINE_boolean("jit", False, "Compile the network with XLA (slower than the fused "
                         "oneDNN kernels on CPU; try it on GPU).", flag_values=flag_values)
    if distribute:
        flags.DEFINE_enum("strategy", "default", STRATEGIES,
                          "tf.distribute strategy: default (one device), mirrored (every local "
                          "GPU, else every logical CPU device), multiworker (several machines, "
                          "described by the TF_CONFIG environment variable; see README).",
                          flag_values=flag_values)


def configure_runtime(flag_values):
    """runtime.configure with the runtime flags; before TensorFlow runs its first op."""
    from network import runtime
    runtime.configure(flag_values.precision, flag_values.intra_op_threads,
                      flag_values.inter_op_threads)


def dilated_conv(flag_values, training):
    """How the dilated convolutions run, from --dilated_conv and --jit: (dilated_conv, a line
    saying which and why, for the command to print once its input has been checked)."""
    from network.conv_kernels import resolve_dilated_conv
    choice, reason = resolve_dilated_conv(flag_values.dilated_conv, training, flag_values.jit)
    return choice, f"dilated convolutions: {choice} ({reason}; --dilated_conv overrides)"


def fast_schedule(flag_values):
    """--fast_schedule's betas as numbers; UserError when one is not."""
    try:
        return [float(beta) for beta in flag_values.fast_schedule]
    except ValueError:
        raise params_lib.UserError(
            f"--fast_schedule={','.join(flag_values.fast_schedule)}: give numbers, e.g. "
            "1e-4,1e-3,1e-2,0.05,0.2,0.5") from None


def require_positive(flag_values, *names):
    """UserError naming the first of these flags that is not > 0."""
    for name in names:
        if not flag_values[name].value > 0:
            raise params_lib.UserError(f"--{name} must be > 0 (got {flag_values[name].value})")


# --- running a command -------------------------------------------------------------------

LOG_FORMATS = ("plain", "absl")


class PlainFormatter(logging.Formatter):
    """Log records as the commands' own lines read: the message alone, "warning: " or
    "error: " before it where that applies."""

    def format(self, record):
        message = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        return f"warning: {message}" if record.levelno >= logging.WARNING else message


def define_log_format(flag_values):
    """--log_format, which every command takes (cli.main defines it where it is missing)."""
    flags.DEFINE_enum("log_format", "plain", LOG_FORMATS, "How log lines look: plain (the "
                      "message, with warning: or error: where that applies) or absl (its "
                      "prefix of level, time, thread and source line, for debugging).",
                      flag_values=flag_values)


def set_log_format(name):
    """The format of the lines logged through absl (ours and TensorFlow's Python side)."""
    handler = absl_logging.get_absl_handler()
    handler.setFormatter(PlainFormatter() if name == "plain" else absl_logging.PythonFormatter())

def help_text(asked, flag_values, doc=""):
    """What a help flag prints: --helpshort one line per flag of the command, the others the
    command's `doc` and its flags' descriptions."""
    if asked == "--helpshort":
        own = sorted({flag for module_flags in flag_values.flags_by_module_dict().values()
                      for flag in module_flags}, key=lambda flag: flag.name)
        return "\n".join(f"  --{flag.name}={'' if flag.default is None else flag.default}"
                         f"  {flag.help.split(': ', 1)[-1].split('. ')[0][:70]}"
                         for flag in own)
    return (f"{doc.strip()}\n\n{flag_values.get_help()}\n\n"
            "--helpshort lists the flags in one line each.")


def parse_flags(argv, flag_values, doc=""):
    """Parses argv[1:] into flag_values (every flag back to its default first), with every
    mistake reported in one line and help that exits 0."""
    asked = [arg for arg in argv[1:] if arg in HELP_FLAGS]
    if asked:
        print(help_text(asked[0], flag_values, doc))
        sys.exit(0)
    for name in flag_values:  # (FlagValues.unparse_flags would log a line)
        flag_values[name].unparse()
    try:
        remaining = flag_values(argv)
    except flags.Error as error:
        sys.exit(f"error: {error}; --helpshort lists the flags")
    if len(remaining) > 1:
        sys.exit(f"error: unexpected arguments {remaining[1:]}; flags look like --name=value")


def main(command, flag_values, argv, interrupted):
    """Runs `command()` with argv (`[program, flags...]`) parsed into flag_values, as the
    process `python PROGRAM FLAGS...` would, and returns its exit status: a UserError ends it
    with one line "error: ..." on stderr and 1, Ctrl-C with the line `interrupted` (what was
    kept, how to go on); never a traceback.

    Not absl.app.run, which parses the global flags.FLAGS and ends the process: each command
    parses its own FlagValues and returns, so the tests run several commands in one process,
    and mistakes become one line, not a traceback. What app.run sets up that matters here is
    kept: absl's log handler (`use_absl_handler`, its format set by --log_format) and, in
    `run`, faulthandler."""
    # absl's logging as absl.app.run sets it up: its handler on stderr, INFO shown; its lines
    # plain unless --log_format=absl asks for absl's prefixes.
    absl_logging.use_absl_handler()
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
        flags.FLAGS.verbosity = 0
    if "log_format" not in flag_values:
        define_log_format(flag_values)
    try:
        parse_flags(argv, flag_values, sys.modules[command.__module__].__doc__ or "")
        set_log_format(flag_values.log_format)
        try:
            command()
        except params_lib.UserError as error:
            sys.exit(f"error: {error}")
        except KeyboardInterrupt:
            sys.exit(interrupted)
    except SystemExit as exit:  # what the interpreter does with it at exit
        if exit.code is None or isinstance(exit.code, int):
            return exit.code or 0
        print(exit.code, file=sys.stderr)
        return 1
    return 0


def run(main):
    """Runs a command's `main(argv)` as this process's main program and exits with its status."""
    faulthandler.enable()  # a hang or a crash in TensorFlow shows where (absl.app.run does too)
    sys.exit(main(sys.argv))
