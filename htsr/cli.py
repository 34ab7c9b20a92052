"""The ``htsr`` command line: a thin layer over :func:`htsr.analyze`.

It parses arguments into the same options the library validates (the flags are generated from
:data:`htsr.options.OPTION_SPECS`), calls the library, prints or writes the results, and turns
library errors into a one-line message and an exit status (:data:`EXIT_STATUSES`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from .analyze import analyze
from .compare import (
    DISTANCE_OPTIONS,
    TREND_METRICS,
    _check_labels,
    compare,
    distances_csv_text,
    format_comparison,
    format_distances,
    glob_order,
    layer_distances,
)
from .errors import HtsrError, OptionError, OutputError
from .fits.uncertainty import MIN_WARNING_REPLICATES, warning_interval
from .options import OPTION_SPECS, Options, typed_flag
from .results import (
    CONTROL_ESCAPES,
    MEANS_OVER,
    summary_rows,
    AnalysisResult,
    an_output,
    check_outputs,
    format_value,
    json_safe,
    saved_result,
    saved_run,
    table_columns,
    text_table,
    why_undefined,
    write_outputs,
)

__all__ = ["main", "build_parser", "format_table", "add_option_flags", "options_from_args", "EXIT_STATUSES"]

#: the exit statuses of ``htsr`` (its --help's epilog and the README list the same)
EXIT_STATUSES = {
    0: "done (some layers may be not_fitted, skipped or failed: their status says why)",
    1: "standard output could not be written (the output files were)",
    2: "a bad option or argument, a source that cannot be read or has no analysable layer, or an output\n"
       "       (--out, --report, --figure) that cannot be written",
    3: "analyze: every layer failed (its rows and outputs are still written)",
    130: "interrupted (Ctrl-C); no output is left half-written",
    143: "terminated (SIGTERM); no output is left half-written",
}

_TEXT_COLUMNS = ("name", "kind", "shape", "best_fit", "phase", "trap_weights", "warning", "status")


#: below this many bootstrap replicates the CLI says the interval and p-value are coarse (and the warnings
#: do not use them)
FEW_REPLICATES = MIN_WARNING_REPLICATES


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _in_flags(text: str) -> str:
    """An API message in the flags' terms: "option 'mp_fit' set to True" is "without --no-mp-fit",
    "option 'clip_xmax' set to True" "--clip-xmax", "option 'precision' set to 'fast'" "--precision fast"; an
    option on its own as it is typed (one on by default: --no-mp-fit); compare's "ascending=True" "--ascending"."""
    def condition(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if value not in ("True", "False"):
            return f"{_flag(name)} {value.strip(chr(39))}"
        on = value == "True"
        flag = typed_flag(name)
        return f"with {flag}" if on != (OPTION_SPECS[name].default is True) else f"without {flag}"

    text = re.sub(r"option '(\w+)' set to (True|False|'[^']*'|\S+)", condition, text)
    text = text.replace("only with with ", "only with ").replace("only with without ", "only without ")
    # "applies only without --no-mp-fit" (a double negative): "would change nothing with --no-mp-fit"
    text = re.sub(r"applies only without (--no-[\w-]+)(?: or with (--[\w-]+))?: otherwise it would change nothing",
                  lambda m: f"would change nothing with {m[1]}" + (f" unless {m[2]} is given" if m[2] else ""), text)
    text = text.replace("ascending=True", "--ascending").replace("ascending=False", "--descending")
    # compare's keywords, named as its flags: "metric 'x' is not a summary column" is "--metric 'x' …"
    text = re.sub(r"^(layer_metric|metric) (?=')", lambda m: f"--{m[1].replace('_', '-')} ", text)
    text = re.sub(r"option '(\w+)'", lambda m: typed_flag(m.group(1)), text)
    return re.sub(r"(--[\w-]+) \(\1\)", r"\1", text)  # (an API message naming both: "option 'workers' (--workers)")


def out_path(v: str) -> Path:
    """An argparse type for an output path: an empty one (an unset shell variable) is refused rather than
    read as the current folder."""
    if not v.strip():
        raise argparse.ArgumentTypeError("an empty path: give a folder or file to write")
    return Path(v)


def _float(v: str) -> float:
    """A number, refused when it underflows to 0 (1e-400 had been refused as 'got 0.0', not what was typed)."""
    x = float(v)
    if x == 0 and re.search(r"[1-9]", v.lower().partition("e")[0]):
        raise argparse.ArgumentTypeError(f"{v} is too small for a floating-point number (it reads as 0)")
    return x


_float.__name__ = "float"  # argparse names the type in its error message


def _xmin(v: str) -> Any:
    try:
        float(v)
    except ValueError:
        return v
    return _float(v)


def _kinds(v: str) -> list[str]:
    return [k.strip() for k in v.split(",") if k.strip()]


def _or_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that reads 'none' as None and anything else with ``parse``."""
    def f(v: str) -> Any:
        return None if v.lower() == "none" else parse(v)

    f.__name__ = parse.__name__  # argparse names the type in its error message
    return f


#: argument types of the options whose type does not follow from their default (an int or float default
#: gives that type; anything else is a string)
_PARSERS = {"xmin": _xmin, "kinds": _kinds, "max_evals": _or_none(int), "workers": _or_none(int),
            "farms_aspect": _or_none(_float)}


def _parser_for(name: str, default: Any) -> Callable[[str], Any]:
    if name in _PARSERS:
        return _PARSERS[name]
    return _float if type(default) is float else int if type(default) is int else str


class _Parser(argparse.ArgumentParser):
    """argparse with htsr's one-line error format (exit status 2, no usage dump), and no abbreviated long options
    (``--boot 20`` had been taken as ``--bootstrap``: a script's abbreviation would change meaning as soon as
    another option of that prefix came)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"htsr: error: {message} (see '{self.prog} --help')\n")


#: what to give instead of a value flag repeated, where one value can say several
_ONCE_HINT = {"kinds": ": several kinds are one comma list (--kinds dense,conv2d)",
              "layers": ": several patterns are one regular expression ('a|b')"}


class _Once(argparse.Action):
    """A value flag given at most once: a second one is refused, not the one kept (a script's first --kinds or
    --layers had been dropped without a word; --split alone takes one rule a flag)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        given = namespace.__dict__.setdefault("_given_once", set())  # (a flag with a default: the flags seen)
        if self.dest in given:
            parser.error(f"{option_string} is given twice: give it once{_ONCE_HINT.get(self.dest, '')}")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every analysis option of :data:`OPTION_SPECS` (shared by every subcommand)."""
    for name, spec in OPTION_SPECS.items():
        if name in ("progress", "keep_spectra"):  # set by --progress/--quiet and by --report
            continue
        default = "none" if spec.default is None else spec.default
        help_text = f"{spec.help} (default: {default}; {spec.flag_allowed})"
        if spec.default is False:
            parser.add_argument(_flag(name), dest=name, action="store_true", default=None,
                                help=f"{spec.help} (default: off)")
        elif spec.default is True:
            parser.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_false", default=None,
                                help=f"turn off (it is on by default): {spec.help}")
        elif name == "split":  # one rule a flag, given as often as there are rules
            parser.add_argument(_flag(name), dest=name, action="append", default=None, metavar="REGEX=PARTS",
                                help=f"{spec.help} (default: none; {spec.flag_allowed})")
        else:
            metavar = "REGEX" if name == "layers" else ("K1,K2" if name == "kinds" else None)
            parser.add_argument(_flag(name), dest=name, type=_parser_for(name, spec.default), default=None,
                                action=_Once, metavar=metavar, help=help_text)
    parser.add_argument("--progress", dest="progress", action="store_true", default=None,
                        help="progress bar on stderr (default: on when stderr is a terminal and tqdm is installed)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print nothing but errors and what --json asks for (no table, no summary, no progress bar)")


def options_from_args(args: argparse.Namespace, note: bool = True) -> dict[str, Any]:
    """The analysis options given on the command line, validated (OptionError on a bad one); with ``note``, the
    note on a small --bootstrap printed (:func:`bootstrap_note`)."""
    options = {name: getattr(args, name) for name in OPTION_SPECS if getattr(args, name, None) is not None}
    if "progress" not in options:
        options["progress"] = not args.quiet and _tqdm_available() and sys.stderr.isatty()
    elif args.quiet and options["progress"]:
        raise OptionError("--progress and --quiet: --quiet prints no progress bar; give one of them")
    elif args.quiet:
        options["progress"] = False
    try:
        Options.create(**options)  # validate before any file is touched
    except OptionError as e:  # a bad value in the flags' terms: --farms-aspect, "none", a comma list (any other
        if e.option is None:  # message main prints in them: _in_flags)
            raise
        v = e.value
        got = "none" if v is None else ",".join(v) if isinstance(v, list) else v
        got = "''" if got == "" else got  # (--kinds ',' is an empty list)
        raise OptionError(f"{_flag(e.option)} must be {OPTION_SPECS[e.option].flag_allowed}, got {got}") from None
    if note:
        bootstrap_note(options, args)
    return options


def bootstrap_note(options: dict[str, Any], args: argparse.Namespace) -> None:
    """On stderr, what a --bootstrap below FEW_REPLICATES cannot give (unless --quiet)."""
    if 0 < options.get("bootstrap", 0) < FEW_REPLICATES and not args.quiet:
        print(f"htsr: note: --bootstrap {options['bootstrap']}: with fewer than {FEW_REPLICATES} replicates the "
              "interval's ends are among the most extreme replicates, and the p-value moves in steps of "
              f"{1 / options['bootstrap']:.2g}; the warnings and the no-power-law count do not use them",
              file=sys.stderr)


_EXIT_EPILOG = "exit status:\n" + "\n".join(f"  {code:<4} {what}" for code, what in EXIT_STATUSES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="htsr",
        description="How well is each layer of a trained network trained? Spectral (HTSR) analysis "
                    "of its weights alone: no training or test data.",
        epilog=_EXIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"htsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser(
        "analyze",
        help="analyse every weight matrix of a model",
        description="Analyse every weight matrix of a model: ESD, power-law alpha, norms, ranks. "
                    "Prints a per-layer table and the model summary. An option that would change nothing "
                    "(--seed without --bootstrap or --randomize, --max-fingers without --clip-xmax …) is "
                    "refused, not ignored.",
        epilog=_EXIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE",
                   help="a model file or folder, detected by content: .safetensors (or a Hugging Face folder, "
                        "sharded), a .pt/.pth/.bin checkpoint, TorchScript or torch.export (.pt2) archive, "
                        ".npz/.npy, .onnx, "
                        ".keras/.h5, Flax .msgpack, .gguf, a PEFT adapter folder (LoRA, LoHa, LoKr), a "
                        "single-file LoRA (kohya-ss, LyCORIS, diffusers .safetensors), or a folder of "
                        "WeightWatcher's extracted layers (ww_config.json)")
    p.add_argument("--out", metavar="DIR", type=out_path, action=_Once,
                   help="write layers.csv and summary.json into DIR (created if needed; written with --report as "
                        "one set, atomically: a failure leaves none of them)")
    p.add_argument("--report", metavar="FILE.html", type=out_path, action=_Once,
                   help="write a self-contained HTML report (summary, warnings, sortable table, figures; "
                        "keeps the eigenvalues for the per-layer figures); its folder is created if needed")
    p.add_argument("--json", action="store_true",
                   help="print the result (source, options, summary, layers) as one JSON document instead of "
                        "the table")
    add_option_flags(p)
    add_compare_parser(sub)
    return parser




def _cell(row: Any, column: str) -> str:
    v = getattr(row, column)
    if column == "trap_weights" and v.count(";") >= 2:  # the table shows two; the files have them all
        v = "; ".join(v.split("; ")[:2]) + "; …"
    return format_value(v)


#: what a terminal would act on rather than show, in anything htsr prints (a name or a file's text quoted in an
#: error, a source line): those but tab, newline and carriage return (the progress bar's). A tensor named
#: "\x1b]0;…\x07\x1b[2J" had set the terminal's title and cleared its screen.
_TERMINAL_ESCAPES = {c: e for c, e in CONTROL_ESCAPES.items() if chr(c) not in "\t\n\r"}


def format_table(result: AnalysisResult, columns: Sequence[str] | None = None) -> str:
    """The per-layer table as aligned plain text."""
    columns = table_columns(result) if columns is None else columns
    return text_table(columns, [[_cell(r, c) for c in columns] for r in result.layers],
                      [c in _TEXT_COLUMNS for c in columns])


def format_summary(result: AnalysisResult) -> str:
    s = result.summary
    why = {k: f"n/a ({v})" for k, v in why_undefined(result.options).items()}
    lines = [
        f"source: {result.source}",
        f"layers: {s.num_layers}  fitted: {s.num_fitted}  not fitted: {s.num_not_fitted}  skipped: {s.num_skipped}  "
        f"failed: {s.num_failed}" + (f"  ({summary_rows(result.layers)})" if s.means_over != "all" else ""),
        f"warnings: over-trained {s.num_over_trained}  under-trained {s.num_under_trained}  "
        f"uncertain {s.num_uncertain}  no-power-law {format_value(s.num_no_power_law, nan='n/a')}  "
        f"(interval of alpha: {warning_interval(result.options)})",
        f"power law plausible (bootstrap p > 0.1): "
        f"{format_value(s.share_plausible_pl, nan=why['share_plausible_pl'])}  "
        f"best fit is the power law: {format_value(s.share_best_fit_pl, nan=why['share_best_fit_pl'])}",
        "phases: " + ("  ".join(f"{p} {format_value(n)}" for p, n in s.phases.items())
                      if all(math.isfinite(n) for n in s.phases.values()) else why["phases"])
        + (f"  layers with correlation traps: {format_value(s.num_with_traps, nan=why['num_with_traps'])}"
           if result.options.get("randomize") else ""),
        f"means over {MEANS_OVER[s.means_over]} with a finite value: "
        + "  ".join(f"{k}={format_value(v, nan='n/a')}" for k, v in s.means.items()),
    ]
    if result.not_analysed:
        lines.append(format_not_analysed(result))
    return "\n".join(lines)


def format_not_analysed(result: AnalysisResult) -> str:
    """One line: how many of the source's tensors give no row, and why (summary.json lists examples)."""
    total = sum(n.count for n in result.not_analysed)
    of = f" of {result.num_tensors}" if result.num_tensors is not None else ""
    return (f"tensors not analysed: {total}{of}: "
            + "; ".join(f"{_in_flags(n.reason)} {n.count}" for n in result.not_analysed))


def out_folder(out: Path | None, names: Sequence[str]) -> list[tuple[str, Path]]:
    """The files ``--out`` will hold, as outputs for :func:`~htsr.results.check_outputs`."""
    if out is None:
        return []
    if os.path.exists(out) and not os.path.isdir(out):  # (os.path's tests: pathlib's raise in a locked folder)
        raise OutputError(f"--out {out}: exists and is not a folder")
    return [("--out", out / name) for name in names]


_WINDOWS = os.name == "nt"


def _to_devnull(fd: int) -> None:
    """File descriptor ``fd`` (a standard stream's) onward writes to /dev/null."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _stdout(*a: object, **kw: Any) -> None:
    """print, to a pipe that may close (``| head``): once it has, the rest of the output is dropped, not an
    error, and the command goes on to write its files."""
    try:
        print(*a, **kw)
        sys.stdout.flush()  # (a pipe closed under a buffer would fail at exit instead, after the outputs)
    except OSError as e:
        _to_devnull(sys.stdout.fileno())
        # a reader gone (`| head`) is no error: BrokenPipeError, or on Windows EINVAL (CPython issue 79935); a full
        # disk under a redirect is, once the files are written
        if not (isinstance(e, BrokenPipeError) or (_WINDOWS and e.errno == errno.EINVAL)):
            _STDOUT_FAILED.append(e.strerror or str(e))


#: why standard output could not be written, if it could not (main reports it once the outputs are written)
_STDOUT_FAILED: list[str] = []


def speakers(args: argparse.Namespace) -> tuple[Callable[..., None], Callable[..., None]]:
    """(out, say) of a command: ``out`` prints its document (``--json``) to stdout; ``say`` its table and notes,
    to stdout, or to stderr with ``--json``, or nowhere with ``--quiet``."""
    if args.quiet:
        return _stdout, lambda *a: None
    return _stdout, (lambda *a: print(*a, file=sys.stderr)) if args.json else _stdout


def write_and_say(files: Sequence[tuple[str, Path, str | bytes | None]], say: Callable[..., None]) -> None:
    """Write a command's outputs ``(flag, path, data)`` as one set (a full disk leaves none of them, not a mix
    with an earlier run's; data None: an output this run does not have, whose earlier file is removed) and
    say which were written and removed."""
    removed = write_outputs(files)
    written = [str(path) for _, path, data in files if data is not None]
    if written:
        say("wrote " + ", ".join(written))
    if removed:
        say("removed " + ", ".join(map(str, removed)) + " (an earlier run's; this run has no such output)")


def _run_analyze(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    outputs = out_folder(args.out, ("layers.csv", "summary.json"))
    if args.report is not None:
        outputs.append(("--report", args.report))
        options["keep_spectra"] = True
    check_outputs([args.source, options.get("base")], outputs)  # before minutes of analysis, not after
    from .analyze import open_model

    source = open_model(args.source)  # headers only; then the files it reads (an ONNX model's external data)
    if isinstance(options.get("base"), (str, os.PathLike)):  # and the base's (its external data had been replaced)
        options["base"] = open_model(options["base"])
    check_outputs([source, options.get("base")], outputs)
    if args.report is not None and args.report.suffix.lower() not in (".html", ".htm"):
        raise OptionError(f"--report {args.report}: the report is an HTML file; name it .html")
    result = analyze(source, **options)
    out, say = speakers(args)
    if args.json:
        out(result.json_text(), end="")
    else:
        say(format_table(result))
        say()
        say(format_summary(result))
    files: list[tuple[str, Path, str | bytes]] = []
    if args.out is not None:
        files += [("--out", args.out / "layers.csv", result.csv_text()),
                  ("--out", args.out / "summary.json", result.json_text(layers=False))]
    if args.report is not None:
        from .report import render_report

        files.append(("--report", args.report, render_report(result)))
    write_and_say(files, say)
    if args.out is not None:  # an earlier run's report or figures beside this run's tables would read as its own
        written = {Path(p).resolve() for _, p, _ in files}
        earlier = sorted(f.name for f in args.out.iterdir() if f.is_file() and an_output(f)
                         and f.resolve() not in written)
        if earlier:
            say(f"note: {args.out} also holds {', '.join(earlier)}, not written by this run")
    if all(r.status.startswith("failed") for r in result.layers):
        print(_one_line(f"htsr: error: {result.source}: every layer failed ({len(result.layers)} of "
                        f"{len(result.layers)}; their statuses say why)"), file=sys.stderr)
        return 3
    return 0


def _tqdm_available() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _one_line(message: str) -> str:
    """An error message on one line whatever it quotes (a tensor named "x\\nhtsr: done" had forged a second line)."""
    return message.translate({c: CONTROL_ESCAPES[c] for c in (10, 13)})


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread as Ctrl-C's KeyboardInterrupt is: a run's temporary outputs are removed."""


class _SafeStream:
    """A standard stream whose text is written with the characters a terminal would act on escaped
    (_TERMINAL_ESCAPES); with ``drop_when_gone`` (stderr), writes after its reader has gone (``2>&1 | head``, a
    closed pipe) are dropped, not an error: the progress bar and the notes were no reason to stop a run that writes
    its files (the run had stopped and exited 0, nothing written). The file descriptor then goes to /dev/null, so
    nothing fails at exit. Without it (stdout), errors reach the caller, which says what failed."""

    def __init__(self, stream: Any, drop_when_gone: bool) -> None:
        self._stream, self._gone, self._drop = stream, False, drop_when_gone

    def _went(self) -> None:
        self._gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            _to_devnull(self._stream.fileno())

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                self._stream.write(text.translate(_TERMINAL_ESCAPES))
            except OSError:
                if not self._drop:
                    raise
                self._went()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except OSError:
                if not self._drop:
                    raise
                self._went()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _sturdy_process() -> Any:
    """For one command: standard streams that cannot stop it — a closed one (``>&-``) as /dev/null, characters
    its encoding lacks (a non-UTF-8 locale, PYTHONIOENCODING=ascii; names are anything) escaped, not an error
    after minutes of analysis, what a terminal would act on escaped, and a stderr whose reader has gone dropped —
    and SIGTERM raised as _Terminated (in the main thread, where handlers are set). Everything is put back after."""
    saved = sys.stdout, sys.stderr
    opened, errors, handler = [], [], None
    try:
        for name in ("stdout", "stderr"):
            if getattr(sys, name) is None:
                opened.append(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 (closed below)
                setattr(sys, name, opened[-1])
            stream = getattr(sys, name)
            if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) != "backslashreplace":
                errors.append((stream, stream.errors))
                stream.reconfigure(errors="backslashreplace")
        sys.stdout, sys.stderr = _SafeStream(sys.stdout, False), _SafeStream(sys.stderr, True)
        # (in the main thread, where handlers are set; not where SIGTERM is ignored, as `nohup`-like launchers
        # and a shell's `trap '' TERM` leave it, or handled by the embedding program)
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            def terminated(signum: int, frame: Any) -> None:
                raise _Terminated()

            handler = signal.signal(signal.SIGTERM, terminated)
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)
        for stream, was in errors:
            with contextlib.suppress(Exception):
                stream.reconfigure(errors=was)
        sys.stdout, sys.stderr = saved
        for f in opened:
            f.close()


def main(argv: Sequence[str] | None = None) -> int:
    with _sturdy_process():
        return _main(argv)


def run() -> None:
    """The ``htsr`` command: :func:`main`, and on Ctrl-C or SIGTERM the process ends as soon as its outputs are
    cleaned up, without waiting for the layers running in worker threads (an eigensolver cannot be stopped; the
    interpreter's exit would join them, and a second Ctrl-C there printed a traceback)."""
    rc = main()
    if rc in (130, 143):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(rc)
    sys.exit(rc)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "compare":  # models given after an option ('htsr compare a --metric alpha b'), which
        # argparse leaves over, in order (not a value after an unknown option: '--bogus 5' stays as it is)
        model = [not e.startswith("-") and not (i and extra[i - 1].startswith("-")) for i, e in enumerate(extra)]
        args.sources = [*args.sources, *(e for e, m in zip(extra, model) if m)]
        extra = [e for e, m in zip(extra, model) if not m]
    if extra:  # named here, where the subcommand is known: its --help lists what it takes
        parser.exit(2, f"htsr: error: unrecognized arguments: {' '.join(extra)} (see 'htsr {args.command} "
                       "--help')\n")
    try:
        with warnings.catch_warnings():
            # numpy's overflow / invalid-value warnings on odd layers: each such layer's row says what
            # became of it, and the output stays the table (and --json stays one document on stdout)
            warnings.simplefilter("ignore", RuntimeWarning)
            _STDOUT_FAILED.clear()
            if args.command == "compare":
                rc = run_compare(args)
            else:
                rc = _run_analyze(args)
            if _STDOUT_FAILED:
                wrote = any(getattr(args, flag, None) is not None for flag in ("out", "report", "figure"))
                print(f"htsr: error: standard output: cannot write ({_STDOUT_FAILED[0]})"
                      + ("; the output files were written" if wrote else ""), file=sys.stderr)  # (at status 3 too)
                return 1
            return rc
    except HtsrError as e:
        print(f"htsr: error: {_one_line(_in_flags(str(e)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("htsr: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("htsr: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # output piped into e.g. `head`: not an error
        _to_devnull(sys.stdout.fileno())
        return 0
    except OSError as e:  # a file that failed past the checks (a removed folder …): an input or an output, status 2
        # (1 is standard output's alone, which _SafeStream reports)
        where = f"{e.filename}: " if e.filename else ""
        print(f"htsr: error: {_one_line(f'{where}{e.strerror or e}')}", file=sys.stderr)
        return 2


# ----------------------------------------------------------------------------------------------------------
# `htsr compare` (htsr.compare's API from the command line)


def _labels_arg(v: str) -> list[str]:
    return [x.strip() for x in v.split(",")]


def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to ``htsr``'s subparsers and return its parser."""
    p = subparsers.add_parser(
        "compare",
        help="compare several models (summary table, ranking, per-layer alpha side by side)",
        description="Analyse each model with the same options and compare them: summary table, a ranking by "
                    "one summary metric, and per-layer values side by side for the layers present in every "
                    "model. With --base-distances and two models, also how far the first is from the second, "
                    "layer by layer (Frobenius, ESD Jensen-Shannon distance, lambda_max change, linear CKA).",
        epilog=_EXIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="two or more models (any format htsr analyze reads)")
    p.add_argument("--labels", type=_labels_arg, action=_Once, metavar="A,B,...",
                   help="one distinct name per model, comma-separated (default: the file names)")
    p.add_argument("--metric", default="alpha", action=_Once, metavar="NAME",
                   help="summary metric that ranks the models (default: alpha; e.g. alpha_weighted, log_norm, "
                        "log_spectral_norm, stable_rank, rand_js_distance)")
    p.add_argument("--layer-metric", metavar="NAME", action=_Once,
                   help="per-layer column shown side by side for the layers present in every model (default: "
                        "--metric when it is a per-layer column, else alpha; e.g. alpha_weighted, stable_rank, "
                        "mp_softrank)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ascending", dest="ascending", action="store_const", const=True, default=None,
                   help="rank lower values first (default: the metric's HTSR reading; alpha-like metrics: lower is "
                        "better)")
    g.add_argument("--descending", dest="ascending", action="store_const", const=False,
                   help="rank higher values first")
    p.add_argument("--base-distances", action="store_true",
                   help="with exactly two models: distances of the first from the second, layer by layer")
    p.add_argument("--out", metavar="DIR", type=out_path, action=_Once,
                   help="write comparison.csv (per-layer side by side) and comparison.json (and distances.csv "
                        "with --base-distances; without it, an earlier run's distances.csv is removed) into DIR (created if "
                        "needed; written with --figure as one set, atomically)")
    p.add_argument("--figure", metavar="PATH", type=out_path, action=_Once,
                   help="draw the summary metrics across the models into this image (needs matplotlib)")
    p.add_argument("--json", action="store_true",
                   help="print the comparison (and the distances) as one JSON document instead of the tables")
    add_option_flags(p)
    return p


def run_compare(args: argparse.Namespace) -> int:
    """Run ``htsr compare`` from parsed arguments; raises HtsrError on bad input (main prints it)."""
    options = options_from_args(args, note=False)  # (the note after the checks: saved runs refuse --bootstrap)
    if len(args.sources) < 2:
        raise OptionError(f"compare needs at least two models, got {len(args.sources)}")
    if args.base_distances and len(args.sources) != 2:
        raise OptionError(f"--base-distances needs exactly two models (the model, then its base), "
                          f"got {len(args.sources)}")
    if args.base_distances and options.get("base") is not None:
        raise OptionError("--base-distances measures the two models' own weights, which --base does not change; "
                          "run the comparison of deltas (--base) and the distances as two commands")
    names = ("comparison.csv", "comparison.json", "distances.csv")  # (removed, if stale, without --base-distances)
    outputs = out_folder(args.out, names) + ([("--figure", args.figure)] if args.figure is not None else [])
    # (a saved run's folder is read for its two files only: a comparison may be written beside them)
    inputs = [[p / "layers.csv", p / "summary.json"] if os.path.isdir(p := Path(s)) and saved_result(p) else [s]
              for s in args.sources]
    check_outputs([*(f for group in inputs for f in group), options.get("base")], outputs)  # before the analyses
    if args.figure is not None:  # before the analyses: the extension, and matplotlib to draw it
        from .plot import can_draw

        try:
            can_draw(args.figure)
        except OptionError as e:  # (the flag named, as the other outputs' errors name theirs)
            raise OptionError(f"--figure {e}") from None
    from .analyze import open_model

    labels = _check_labels(args.labels, args.sources)  # from the paths, before they are opened
    # every model and the --base opened (format, headers) before the first analysis: a bad last path fails
    # now, and the analyses reuse these readers
    sources = [saved_run(s) or open_model(s) for s in args.sources]
    saved = [a for a, s in zip(args.sources, sources) if isinstance(s, AnalysisResult)]
    if len(saved) < len(sources):  # (some model is analysed: --bootstrap is used)
        bootstrap_note(options, args)
    if args.base_distances and saved:
        raise OptionError(f"--base-distances measures the two models' weights: give the models, not saved runs "
                          f"({', '.join(map(str, saved))})")
    if options.get("base") is not None:  # opened once here, not once per model and per check
        options["base"] = open_model(options["base"])
    check_outputs([*(s for s in sources if not isinstance(s, AnalysisResult)), options.get("base")], outputs)
    c = compare(sources, labels, args.metric, args.ascending, args.layer_metric, **options)
    distances = None
    if args.base_distances:
        # (the others are the analyses'; --workers runs both)
        keep = {k: v for k, v in options.items() if k in DISTANCE_OPTIONS or k in ("workers", "progress")}
        distances = layer_distances(sources[0], sources[1], **keep)

    doc = c.as_dict()
    if distances is not None:
        doc["distances"] = json_safe([d.as_dict() for d in distances])
    doc_text = json.dumps(doc, indent=2, allow_nan=False) + "\n"  # printed by --json, written by --out
    out, say = speakers(args)
    if args.json:
        out(doc_text, end="")
    else:
        say(format_comparison(c))
        if distances is not None:
            say()
            say(f"distances of {c.labels[0]} from {c.labels[1]}, layer by layer:")
            say(format_distances(distances))
    files: list[tuple[str, Path, str | bytes]] = []
    if args.out is not None:
        files += [("--out", args.out / "comparison.csv", c.csv_text()),
                  ("--out", args.out / "comparison.json", doc_text)]
        # (without --base-distances, an earlier run's distances.csv would sit beside this comparison)
        files.append(("--out", args.out / "distances.csv",
                      distances_csv_text(distances) if distances is not None else None))
    if args.figure is not None:
        from . import figures
        from .plot import panels_image

        metrics = TREND_METRICS + ((c.metric,) if c.metric not in TREND_METRICS else ())
        trend = figures.metric_trend(c.results, c.labels, metrics, glob_order(c.labels))
        files.append(("--figure", args.figure, panels_image(trend, args.figure)))
    write_and_say(files, say)
    return 0


if __name__ == "__main__":
    run()
