"""The `longmem` command: parse the arguments, then call one function.

Each command is one block below: a function that adds its flags, beside the
handler that runs it (its docstring is the command's help: the first line
the summary, the rest the description); `COMMANDS` lists them in the order
`longmem --help` shows them.

Exit codes: 0 success, 1 a user error (one line on stderr, no traceback),
2 a usage error (from argparse).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from longmem import __version__, config, engine, lock, signals
from longmem.errors import UserError
from longmem.rundir import RunDir


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    lock.allow_unlocked = getattr(args, "no_lock", False)
    try:
        with signals.Interrupts():
            return args.func(args) or 0
    except UserError as e:
        print(f"longmem: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("longmem: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        # A file-system failure (read-only, full, a file where a folder should be):
        # the path and what the command was doing, in one line.
        where = f" {e.filename}" if e.filename else ""
        print(f"longmem: error: {args.command}: cannot use{where}: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        lock.release_all()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longmem", description="Train and study character-level recurrent networks."
    )
    parser.add_argument("--version", action="version", version=f"longmem {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_flags, handler) in COMMANDS.items():
        summary, _, details = handler.__doc__.partition("\n\n")
        p = commands.add_parser(name, help=summary, description=" ".join(details.split()) or summary,
                                formatter_class=_ShowDefaults)
        add_flags(p)
        p.set_defaults(func=handler)
    return parser


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to each option's help, except where X is None (the
    help then says what happens when the option is not given; config fields say
    their defaults themselves)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def at_least(lowest: int):
    """An argparse type: a whole number no lower than `lowest`."""

    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, not {value}")
        return value

    return number


def _run_arg(parser: argparse.ArgumentParser, which: bool = False) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="run directory")
    _backend_arg(parser, "the run's")
    if which:
        _checkpoint_arg(parser)


def _backend_arg(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--backend", choices=engine.BACKENDS, default=None,
                        help=f"execution backend (default: {default})")


def _checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", choices=["last", "best"], default="last",
                        help="the parameters of the newest checkpoint, or of the run's best "
                        "evaluation on held-out text (early stopping)")


def _lock_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-lock", action="store_true",
                        help="write the run even where its file system cannot lock it (one writer per run: "
                        "make sure no other process writes it)")


def _curve_args(parser: argparse.ArgumentParser) -> None:
    """The settings of a memory curve."""
    parser.add_argument("--positions", type=int, default=2000, help="positions scored for every context k")
    parser.add_argument("--max-context", type=int, default=1024, help="the longest context k")
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the positions drawn")


def _new_run_dir(given: str | None, name: str) -> RunDir:
    """The run directory given, or runs/<name>-<date and time>."""
    return RunDir(given or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def _new_file(out: str) -> None:
    """Refuse to write over a file the user has, or to a closed standard output."""
    if out == "-":
        if sys.stdout is None:
            raise UserError("standard output is closed; give a file with -o")
    elif Path(out).exists():
        raise UserError(f"{out} exists; give another name with -o or remove it")


def _output(given: str | None, run: RunDir, default: Path) -> Path:
    """Where a command writes its file: `default` in the run, or the path given, which
    must not be a folder nor a file of the user's (checked before the work)."""
    from longmem.files import output_file

    return output_file(given, run.path) if given else default


def _load(args, reads_text: str | None = None):
    """The checkpoint of a run that --checkpoint names and a predictor over its parameters
    (see predict.open_run for `reads_text`)."""
    from longmem.predict import open_run

    return open_run(RunDir(args.run_dir), args.backend, best=args.checkpoint == "best", reads_text=reads_text)


def _heldout(args, snap) -> tuple[np.ndarray, str]:
    from longmem.predict import heldout_codes

    return heldout_codes(RunDir(args.run_dir), snap, args.text, getattr(args, "split", "test"))


# --- train ------------------------------------------------------------------------------------


def train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", help="run directory (default: runs/<corpus>-<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR where it stopped")
    _lock_arg(p)
    processes = p.add_argument_group(
        "processes", "one run over several processes (one per host, each with its --devices), "
        "through JAX's distributed runtime; process 0 writes the run directory")
    processes.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    processes.add_argument("--num-processes", type=int, metavar="P", help="how many processes take part")
    processes.add_argument("--process-id", type=int, metavar="I", help="this process's number, 0 to P-1")
    processes.add_argument("--distributed", action="store_true",
                           help="join a run of several processes, finding what is not given from the "
                           "environment (SLURM, Open MPI, Kubernetes, JAX_COORDINATOR_ADDRESS)")
    for section in config.SECTIONS.values():
        config.add_arguments(p.add_argument_group(section.__name__.removesuffix("Config").lower()), section)


def cmd_train(args) -> None:
    """train a character LSTM (or --resume one)"""
    from longmem import launch

    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        engine.distribute(args.coordinator, args.num_processes, args.process_id)
    if args.resume:
        if args.run_dir:
            raise UserError("give either --resume DIR or --run-dir DIR, not both")
        changes = {key: config.overrides(args, cls) for key, cls in config.SECTIONS.items()}
        run_dir = RunDir(args.resume)
        state = launch.resume(run_dir, changes)
    else:
        cfg = config.from_args(args)
        run_dir = _new_run_dir(args.run_dir, Path(cfg.data.text).stem if cfg.data.text else cfg.data.corpus)
        state = launch.start(cfg, run_dir)
    if engine.processes()[0] == 0:
        print(f"longmem: step {state.step} saved in {run_dir.path}; try: longmem sample {run_dir.path}")


# --- using a trained run ----------------------------------------------------------------------


def sample_flags(p: argparse.ArgumentParser) -> None:
    _run_arg(p, which=True)
    p.add_argument("--prime", default=None, help="text to start from (default: a newline)")
    p.add_argument("--temperature", type=float, default=1.0, help="below 1: safer; above 1: wilder")
    p.add_argument("--length", type=at_least(0), default=500, help="characters to generate")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the k likeliest")
    p.add_argument("--seed", type=at_least(0), default=0, help="random seed")


def cmd_sample(args) -> None:
    """generate text from a trained run"""
    snap, predictor = _load(args)
    prime = args.prime if args.prime is not None else ("\n" if "\n" in snap.vocab.chars else snap.vocab.chars[0])
    text = predictor.generate(
        snap.vocab, prime, args.length, np.random.default_rng(args.seed), args.temperature, args.top_k
    )
    print(prime + text)


def eval_flags(p: argparse.ArgumentParser) -> None:
    _run_arg(p, which=True)
    p.add_argument("--text", help="evaluate on this UTF-8 file instead of the run's test split")
    p.add_argument("--split", choices=["test", "val"], default="test", help="held-out split")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_eval(args) -> None:
    """bits per character and accuracy on held-out text"""
    snap, predictor = _load(args)
    codes, what = _heldout(args, snap)
    t = snap.config.train
    result = predictor.evaluate_heldout(codes, t.batch, t.seq)
    if args.json:
        print(json.dumps(result.to_dict() | {"text": what, "step": snap.step}))
    else:
        print(
            f"{what}: {result.bpc:.3f} bits/char, accuracy {100 * result.accuracy:.1f}% "
            f"over {result.chars:,} characters (step {snap.step}{', the best' if args.checkpoint == 'best' else ''})"
        )


def guess_flags(p: argparse.ArgumentParser) -> None:
    _run_arg(p, which=True)
    p.add_argument("--text", help="a UTF-8 file (default: the run's test split)")
    p.add_argument("--width", type=at_least(1), default=80, help="columns per block")
    p.add_argument("--chars", type=at_least(1), default=800, help="characters to show")
    p.add_argument("--show", nargs="+", metavar="NAME", default=[],
                   help="internal values to draw under each character, one line each: a 0/1 value "
                   "as '|' where 1 (hmlstm's boundaries: hm.0.z), others as shades (lstm.0.c[17])")


def cmd_guess(args) -> None:
    """show the next letter the network guesses at each place"""
    from longmem.study import guess

    snap, predictor = _load(args)
    codes, _ = _heldout(args, snap)
    print(guess.view(snap, predictor, codes[: args.chars + 1], args.width, args.show))


def inspect_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="DIR", help="run directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_inspect(args) -> None:
    """step, configuration and parameter digest of a run"""
    from longmem.loop import summary
    from longmem.rundir import load

    run = RunDir(args.run_dir)
    snap = load(run)
    report = summary(snap, run.read_config())
    if args.json:
        print(json.dumps(report))
        return
    print(f"run         {args.run_dir}")
    print(f"text        {report['text']}")
    print(f"step        {report['step']} (epoch {report['epoch']}, {report['checkpoint']})")
    print(f"lr          {report['lr']:.4g} for the next step")
    if report["best_step"] is not None:
        print(f"best        step {report['best_step']}: {report['best_bpc']:.3f} bits/char on "
              f"{snap.config.train.eval_split} (longmem eval --checkpoint best)")
    print(f"parameters  {report['params']:,} in {len(snap.params)} arrays")
    print(f"digest      sha256:{report['digest']}")
    for name in sorted(snap.params):
        print(f"  {name:14s} {snap.params[name].shape}")
    for section, values in report["config"].items():
        print(f"{section:11s} " + ", ".join(f"{k}={v}" for k, v in values.items()))


def plot_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("items", nargs="+", metavar="DIR_OR_NAME", help="run directories, then names")
    p.add_argument("--names", nargs="+", metavar="LABEL", help="legend labels, one per run")
    p.add_argument("--smooth", type=at_least(1), default=1, metavar="N", help="moving average over N records")
    p.add_argument("--crop", metavar="A:B", help="only steps A <= step < B")
    p.add_argument("--select", metavar="I,J",
                   help="only these elements (flat positions in the value, also under --track-max)")
    p.add_argument("--diff", action="store_true", help="plot the change from record to record")
    p.add_argument("--out", help="PNG file (one figure) or folder (default: DIR/plots/)")
    p.add_argument("--show", action="store_true", help="also show the figures in a window")


def cmd_plot(args) -> None:
    """draw tracked values and learning curves as PNG files

    Draw tracked values (one figure per name) of one or more runs. Without
    names: the learning curve and every tracked value.
    """
    from longmem import plot

    runs = [RunDir(item) for item in args.items if RunDir(item).exists()]
    names = args.items[len(runs) :]
    if not runs or any(RunDir(n).exists() for n in names):
        raise UserError("give the run directories first, then the names to plot")
    labels = args.names or ([r.path.name for r in runs] if len(runs) > 1 else [""])
    if len(labels) != len(runs):
        raise UserError(f"--names gives {len(labels)} labels for {len(runs)} runs")
    opts = plot.Options(args.smooth, plot.parse_crop(args.crop), plot.parse_select(args.select), args.diff)
    for path in plot.plot_runs(runs, labels, names, opts, Path(args.out) if args.out else None, args.show):
        print(path)


# --- the first experiment ---------------------------------------------------------------------


def caesar_flags(p: argparse.ArgumentParser) -> None:
    config.add_arguments(p, config.CaesarConfig)
    p.add_argument("--run-dir", help="run directory (default: runs/caesar-<time>)")
    p.add_argument("--compare", action="store_true",
                   help="train with sgd, rmsprop and rmsprop-global from the same seed and plot them")
    p.add_argument("--plots", help="folder for the --compare figures (default: DIR/plots)")
    _lock_arg(p)


def cmd_caesar(args) -> None:
    """the first experiment: a logistic net learns the Caesar cipher

    Train the original's 26-100-26 logistic net to map each letter to the next.
    """
    from longmem.experiments import caesar

    cfg = config.CaesarConfig(**config.overrides(args, config.CaesarConfig))
    config.validate_caesar(dataclasses.replace(cfg))  # each optimizer of --compare has its own lr
    run = _new_run_dir(args.run_dir, "caesar")
    if args.compare:
        for path in caesar.compare(cfg, run, Path(args.plots) if args.plots else run.plots):
            print(path)
        return
    result = caesar.train(cfg, run)
    print(caesar.report(result, cfg))
    print(f"run saved in {run.path}; plot the biases with: longmem plot {run.path} hidden.b --select 0,1,2")


# --- analyses of a finished run ---------------------------------------------------------------


def memory_flags(p: argparse.ArgumentParser) -> None:
    _run_arg(p, which=True)
    p.add_argument("--split", choices=["test", "val"], default="test", help="held-out split")
    p.add_argument("--text", help="measure on this UTF-8 file instead of a split of the run's text")
    _curve_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="PNG of the curve (default: DIR/plots/memory.png)")
    p.add_argument("--influence", action="store_true",
                   help="also the gradient of each prediction with respect to each of the --max-context "
                   "inputs before it, by lag (stored in the run; figure beside the curve, NAME-influence.png)")
    p.add_argument("--influence-positions", type=at_least(1), default=256,
                   help="positions whose gradients are averaged for --influence")
    _lock_arg(p)


def cmd_memory(args) -> None:
    """held-out bits per character against how much context the model may read

    For each context length k (1, 2, 4, ... --max-context) the model starts from
    its initial state, reads only the k characters before a position and predicts
    it. The positions (--positions of them, drawn with --seed from those with at
    least --max-context characters before them) are the same for every k; the
    reference row ('unlimited') scores them with state carried from the start of
    the held-out text. The curve is stored in the run (memory/), keyed by the
    checkpoint's step and these settings. --influence adds the second view: the
    gradient of each prediction with respect to each earlier input, by lag. 'lost
    starts' is the share of positions that cost over 8 bits more at the longest
    context than unlimited: starts from the initial state that throw the model off
    for long, which every row has; from 1% on, the curve is not read as memory.
    """
    from longmem.study import influence, memory

    ks = memory.contexts(args.max_context)
    run = RunDir(args.run_dir)
    target = _output(args.out, run, run.plots / "memory.png")
    if not args.out and not run.may_store():
        target = None  # a run this process cannot write: the table, without the figure
    snap, predictor = _load(args, reads_text="memory curve")
    codes, _ = _heldout(args, snap)
    curve = memory.of_run(run, snap, predictor, codes, args.split, args.positions, ks, args.seed, args.text)
    looks = None
    if args.influence:
        looks = influence.of_run(run, snap, predictor, codes, args.split, args.influence_positions,
                                 args.max_context, args.seed, args.text)
    figures = [target, target.with_name(f"{target.stem}-influence.png") if looks else None] if target else []
    if target:
        memory.figure({"": curve}, target)
    if looks and target:
        influence.figure({"": looks}, figures[1])
    if args.json:
        shown = curve.to_dict() | {"step": snap.step, "figure": str(target) if target else None}
        if looks:
            shown |= {"influence": looks.to_dict(), "influence_figure": str(figures[1]) if target else None}
        print(json.dumps(shown))
        return
    print(memory.table(curve))
    if looks:
        print("\n" + influence.table(looks))
    print(f"figure: {', '.join(map(str, filter(None, figures)))}" if target else
          "figure: not written (give --out FILE)")


def probe_flags(p: argparse.ArgumentParser) -> None:
    _run_arg(p, which=True)
    p.add_argument("--distances", nargs="+", type=at_least(1), metavar="D",
                   help="distances to score (default: 16 64 256 1024 4096 and the ends of the trained range)")
    p.add_argument("--episodes", type=at_least(1), default=64, help="fresh episodes per distance (the "
                   "default is what compare's probe reach reads)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="PNG of accuracy by distance (default: DIR/plots/probe.png)")
    _lock_arg(p)


def cmd_probe(args) -> None:
    """accuracy by distance on the probe a run trained on

    For each distance, --episodes fresh episodes of the run's probe (seeded by the
    run's seed and the distance, never seen in training), each read from the
    initial state after one episode at the nearest trained distance: the
    accuracy and bits on the scored characters (those only a model that
    remembers can predict), against chance, including distances beyond the
    trained range. The probe reach is the longest distance with 90% or more.
    Stored in the run (probe/), keyed by the checkpoint's step and these settings.
    """
    from longmem.study import probe

    run = RunDir(args.run_dir)
    target = _output(args.out, run, run.plots / "probe.png")
    if not args.out and not run.may_store():
        target = None
    snap, predictor = _load(args)
    found = probe.of_run(run, snap, predictor, probe.of_config(run), args.distances, args.episodes)
    if target:
        probe.figure({"": found}, target)
    if args.json:
        print(json.dumps(found.to_dict() | {"step": snap.step, "figure": str(target) if target else None}))
        return
    print(probe.table(found))
    print(f"figure: {target}" if target else "figure: not written (give --out FILE)")


def compare_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories")
    p.add_argument("--out", required=True, help="folder for the table and figures")
    p.add_argument("--names", nargs="+", metavar="LABEL", help="labels, one per run (default: folder names)")
    _curve_args(p)
    _backend_arg(p, "each run's")
    _checkpoint_arg(p)
    _lock_arg(p)


def cmd_compare(args) -> None:
    """finished runs side by side: a table and figures

    Writes compare.md and compare.json (model, parameters, steps, characters
    seen, training time, held-out bpc and accuracy on the test split, memory
    length, long-context gain, probe reach for a run trained on a probe (the
    longest of `longmem probe`'s default distances with 90% or more), training
    chars/s) and bpc-vs-time.png,
    bpc-vs-chars.png and memory.png into --out. Evaluations and memory curves a
    run does not hold yet are computed and stored in it.
    """
    from longmem.study import compare, memory

    runs = [RunDir(path) for path in args.run_dirs]
    labels = args.names or [run.path.name for run in runs]
    if len(labels) != len(runs):
        raise UserError(f"--names gives {len(labels)} labels for {len(runs)} runs")
    if len(set(labels)) != len(labels):
        raise UserError("give each run its own label (--names): two have the same folder name")
    ks = memory.contexts(args.max_context)
    for path in compare.compare(runs, labels, Path(args.out), args.backend, args.positions, ks, args.seed,
                                best=args.checkpoint == "best"):
        print(path)
    print((Path(args.out) / "compare.md").read_text(), end="")


def report_flags(p: argparse.ArgumentParser) -> None:
    _run_arg(p, which=True)
    p.add_argument("-o", "--out", help="the HTML file to write (default: DIR/report.html)")
    p.add_argument("--text", help="read this UTF-8 file instead of the run's test split")
    p.add_argument("--chars", type=int, default=3000, help="characters of the passage read at full resolution")
    _lock_arg(p)


def cmd_report(args) -> None:
    """what the network does inside, as one self-contained HTML page

    One HTML file (images inline, no network needed to open it): run summary and
    learning curves, surprise over a held-out passage, cells that track
    properties of the text, gate saturation, bits per character by character
    class against n-gram baselines, the memory curve when `longmem memory` has
    measured it, and every tracked value.
    """
    from longmem.study import report

    run = RunDir(args.run_dir)
    print(report.build(run, _output(args.out, run, run.path / "report.html"), args.text, args.chars,
                       args.backend, best=args.checkpoint == "best"))


def graph_flags(p: argparse.ArgumentParser) -> None:
    _run_arg(p)
    p.add_argument("-o", "--out", help="the SVG file to write (default: DIR/graph.svg or DIR/graph-full.svg)")
    p.add_argument("--full", action="store_true", help="every operation of the compiled training step")


def cmd_graph(args) -> None:
    """the computation as a flow chart (SVG)

    Draws the model's computation as a reader thinks of it (embedding, each
    layer and its gates, state carried between windows, softmax, loss, the
    optimizer's updates) from the model's own description; --full draws
    PyTensor's whole compiled training step. Needs Graphviz's dot program.
    """
    from longmem.files import atomic_write
    from longmem.study import graph

    run = RunDir(args.run_dir)
    out = _output(args.out, run, run.path / ("graph-full.svg" if args.full else "graph.svg"))
    atomic_write(out, graph.svg(graph.of_run(run, args.full, args.backend)))
    print(out)


# --- the compressor ---------------------------------------------------------------------------


def compress_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the file to compress, or - for standard input")
    p.add_argument("-o", "--out", help="the archive to write (default: FILE.lmz; - for standard output)")
    p.add_argument("--model", metavar="RUN", help="start from a trained lstm run's weights (the archive then "
                   "needs the same run to decompress); the data must be UTF-8 in the run's characters")
    p.add_argument("--stats", action="store_true", help="print bits per symbol, overall and per tenth")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    config.add_arguments(p.add_argument_group("the online model"), config.CompressConfig)


def cmd_compress(args) -> None:
    """compress a file losslessly with an online LSTM (FILE.lmz)

    Codes each byte with the probability an LSTM gives it, training the LSTM on
    the data as it goes, so that only the archive is needed to decompress. Any
    file, binary included, of any size: it is read twice (once to count and
    checksum, once to code), a block at a time; - reads standard input (kept in
    a temporary file meanwhile) and writes standard output unless -o. Never
    overwrites a file; an interrupted run leaves none.
    """
    from longmem.compress import compress_stream, stats

    out = args.out or ("-" if args.file == "-" else f"{args.file}.lmz")
    _new_file(out)
    settings = config.CompressConfig(**config.overrides(args, config.CompressConfig))
    base = _base_run(args.model)
    with _seekable_input(args.file) as source, _output_stream(out) as sink:
        header = compress_stream(source, sink, settings, base, quiet=args.quiet)
    if args.stats:
        print(stats(header), file=sys.stderr if out == "-" else sys.stdout)


def decompress_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="ARCHIVE", help="the archive, or - for standard input")
    p.add_argument("-o", "--out", help="the file to write (- for standard output)")
    p.add_argument("--model", metavar="RUN", help="the run the archive was made with, if any")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_decompress(args) -> None:
    """restore a file from its .lmz archive

    Decodes the archive a block at a time, checks the result against the
    original's SHA-256 and only then puts the file in place (default: the
    archive's name without .lmz). Never overwrites a file. To standard output
    (-o -) the data streams out as it is decoded, and a failed check comes
    after it (exit code 1).
    """
    from longmem.compress import decompress_stream

    if args.out:
        out = args.out
    elif args.file == "-":
        out = "-"
    elif args.file.endswith(".lmz"):
        out = args.file[: -len(".lmz")]
    else:
        raise UserError(f"{args.file} does not end in .lmz: say where to write with -o")
    _new_file(out)
    base = _base_run(args.model)
    with _input(args.file) as source, _output_stream(out) as sink:
        decompress_stream(source, sink, base, quiet=args.quiet, name="the archive" if args.file == "-" else args.file)


@contextlib.contextmanager
def _input(name: str):
    """Standard input (-) or a file, to read as a binary stream."""
    from longmem.files import input_file

    if name == "-":
        if sys.stdin is None:
            raise UserError("standard input is closed; give a file")
        yield sys.stdin.buffer
        return
    with input_file(name).open("rb") as f:
        yield f


@contextlib.contextmanager
def _seekable_input(name: str):
    """As `_input`, seekable: standard input is copied to a temporary file first, a piece
    at a time."""
    import shutil
    import tempfile

    with _input(name) as f:
        if name != "-":
            yield f
            return
        with tempfile.TemporaryFile() as kept:
            shutil.copyfileobj(f, kept, 1 << 20)
            kept.seek(0)
            yield kept


@contextlib.contextmanager
def _output_stream(out: str):
    """Standard output (-), or a new file that appears whole when the block ends without
    an error, or not at all."""
    from longmem.files import atomic_open

    if out == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with atomic_open(Path(out), before_replace=lambda: _new_file(out)) as f:
        yield f


def _base_run(name: str | None):
    """The trained run that --model names, for the compressor."""
    if name is None:
        return None
    from longmem import checkpoint
    from longmem.compress import Base
    from longmem.rundir import load

    snap = load(RunDir(name))
    if snap.config.model.model != "lstm":
        raise UserError(f"--model {name} is a {snap.config.model.model} run; compress starts from lstm runs")
    return Base(snap.params, checkpoint.digest(snap.params), snap.vocab.chars)


COMMANDS = {
    "train": (train_flags, cmd_train),
    "sample": (sample_flags, cmd_sample),
    "eval": (eval_flags, cmd_eval),
    "guess": (guess_flags, cmd_guess),
    "plot": (plot_flags, cmd_plot),
    "caesar": (caesar_flags, cmd_caesar),
    "memory": (memory_flags, cmd_memory),
    "probe": (probe_flags, cmd_probe),
    "compare": (compare_flags, cmd_compare),
    "compress": (compress_flags, cmd_compress),
    "decompress": (decompress_flags, cmd_decompress),
    "report": (report_flags, cmd_report),
    "graph": (graph_flags, cmd_graph),
    "inspect": (inspect_flags, cmd_inspect),
}


if __name__ == "__main__":
    sys.exit(main())
