"""The `longmem` command: parse the arguments, then call one function.

Exit codes: 0 success, 1 a user error (one line on stderr, no traceback),
2 a usage error (from argparse).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from longmem import config, engine
from longmem.errors import UserError
from longmem.rundir import RunDir


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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


def build_parser() -> argparse.ArgumentParser:
    from longmem.compress import Settings

    parser = argparse.ArgumentParser(
        prog="longmem", description="Train and study character-level recurrent networks."
    )
    parser.add_argument("--version", action="version", version=f"longmem {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Commands whose flags are not config fields show argparse's defaults.
    shown = {"formatter_class": _ShowDefaults}

    train = commands.add_parser("train", help="train a character LSTM (or --resume one)")
    train.add_argument("--run-dir", help="run directory (default: runs/<corpus>-<time>)")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR where it stopped")
    processes = train.add_argument_group(
        "processes", "one run over several processes (one per host, each with its --devices), "
        "through JAX's distributed runtime; process 0 writes the run directory")
    processes.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    processes.add_argument("--num-processes", type=int, metavar="P", help="how many processes take part")
    processes.add_argument("--process-id", type=int, metavar="I", help="this process's number, 0 to P-1")
    processes.add_argument("--distributed", action="store_true",
                           help="join a run of several processes, finding what is not given from the "
                           "environment (SLURM, Open MPI, Kubernetes, JAX_COORDINATOR_ADDRESS)")
    for section in config.SECTIONS.values():
        group = train.add_argument_group(section.__name__.removesuffix("Config").lower())
        config.add_arguments(group, section)
    train.set_defaults(func=cmd_train)

    sample = commands.add_parser("sample", help="generate text from a trained run", **shown)
    _run_arg(sample, which=True)
    sample.add_argument("--prime", default=None, help="text to start from (default: a newline)")
    sample.add_argument("--temperature", type=float, default=1.0, help="below 1: safer; above 1: wilder")
    sample.add_argument("--length", type=int, default=500, help="characters to generate")
    sample.add_argument("--top-k", type=int, default=None, help="sample only among the k likeliest")
    sample.add_argument("--seed", type=int, default=0, help="random seed")
    sample.set_defaults(func=cmd_sample)

    evaluate = commands.add_parser("eval", help="bits per character and accuracy on held-out text", **shown)
    _run_arg(evaluate, which=True)
    evaluate.add_argument("--text", help="evaluate on this UTF-8 file instead of the run's test split")
    evaluate.add_argument("--split", choices=["test", "val"], default="test", help="held-out split")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=cmd_eval)

    guess = commands.add_parser("guess", help="show the next letter the network guesses at each place", **shown)
    _run_arg(guess, which=True)
    guess.add_argument("--text", help="a UTF-8 file (default: the run's test split)")
    guess.add_argument("--width", type=int, default=80, help="columns per block")
    guess.add_argument("--chars", type=int, default=800, help="characters to show")
    guess.add_argument("--show", nargs="+", metavar="NAME", default=[],
                       help="internal values to draw under each character, one line each: a 0/1 value "
                       "as '|' where 1 (hmlstm's boundaries: hm.0.z), others as shades (lstm.0.c[17])")
    guess.set_defaults(func=cmd_guess)

    plot = commands.add_parser(
        "plot", help="draw tracked values and learning curves as PNG files", **shown,
        description="Draw tracked values (one figure per name) of one or more runs. "
        "Without names: the learning curve and every tracked value.",
    )
    plot.add_argument("items", nargs="+", metavar="DIR_OR_NAME", help="run directories, then names")
    plot.add_argument("--names", nargs="+", metavar="LABEL", help="legend labels, one per run")
    plot.add_argument("--smooth", type=int, default=1, metavar="N", help="moving average over N records")
    plot.add_argument("--crop", metavar="A:B", help="only steps A <= step < B")
    plot.add_argument("--select", metavar="I,J",
                      help="only these elements (flat positions in the value, also under --track-max)")
    plot.add_argument("--diff", action="store_true", help="plot the change from record to record")
    plot.add_argument("--out", help="PNG file (one figure) or folder (default: DIR/plots/)")
    plot.add_argument("--show", action="store_true", help="also show the figures in a window")
    plot.set_defaults(func=cmd_plot)

    caesar = commands.add_parser(
        "caesar", help="the first experiment: a logistic net learns the Caesar cipher",
        description="Train the original's 26-100-26 logistic net to map each letter to the next.",
    )
    config.add_arguments(caesar, config.CaesarConfig)
    caesar.add_argument("--run-dir", help="run directory (default: runs/caesar-<time>)")
    caesar.add_argument("--compare", action="store_true",
                        help="train with sgd, rmsprop and rmsprop-global from the same seed and plot them")
    caesar.add_argument("--plots", help="folder for the --compare figures (default: DIR/plots)")
    caesar.set_defaults(func=cmd_caesar)

    memory = commands.add_parser(
        "memory", help="held-out bits per character against how much context the model may read",
        description="For each context length k (1, 2, 4, ... --max-context) the model starts from "
        "its initial state, reads only the k characters before a position and predicts it. The "
        "positions (--positions of them, drawn with --seed from those with at least --max-context "
        "characters before them) are the same for every k; the reference row ('unlimited') scores "
        "them with state carried from the start of the held-out text. The curve is stored in the run "
        "(memory/), keyed by the checkpoint's step and these settings.", **shown,
    )
    _run_arg(memory, which=True)
    memory.add_argument("--split", choices=["test", "val"], default="test", help="held-out split")
    memory.add_argument("--text", help="measure on this UTF-8 file instead of a split of the run's text")
    _curve_args(memory)
    memory.add_argument("--json", action="store_true", help="print one JSON object")
    memory.add_argument("--out", help="PNG of the curve (default: DIR/plots/memory.png)")
    memory.set_defaults(func=cmd_memory)

    compare = commands.add_parser(
        "compare", help="finished runs side by side: a table and figures",
        description="Writes compare.md and compare.json (model, parameters, steps, characters seen, "
        "training time, held-out bpc and accuracy on the test split, memory length, long-context "
        "gain, training chars/s) and bpc-vs-time.png, bpc-vs-chars.png and memory.png into --out. "
        "Evaluations and memory curves a run does not hold yet are computed and stored in it.", **shown,
    )
    compare.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories")
    compare.add_argument("--out", required=True, help="folder for the table and figures")
    compare.add_argument("--names", nargs="+", metavar="LABEL", help="labels, one per run (default: folder names)")
    _curve_args(compare)
    compare.add_argument("--backend", choices=engine.BACKENDS, default=None,
                         help="execution backend (default: each run's)")
    _checkpoint_arg(compare)
    compare.set_defaults(func=cmd_compare)

    compress = commands.add_parser(
        "compress", help="compress a file losslessly with an online LSTM (FILE.lmz)",
        description="Codes each byte with the probability an LSTM gives it, training the LSTM on the data as "
        "it goes, so that only the archive is needed to decompress. Any file, binary included; - reads "
        "standard input (and writes standard output unless -o). Never overwrites a file.", **shown,
    )
    compress.add_argument("file", metavar="FILE", help="the file to compress, or - for standard input")
    compress.add_argument("-o", "--out", help="the archive to write (default: FILE.lmz; - for standard output)")
    compress.add_argument("--model", metavar="RUN", help="start from a trained lstm run's weights (the archive then "
                          "needs the same run to decompress); the data must be UTF-8 in the run's characters")
    compress.add_argument("--stats", action="store_true", help="print bits per symbol, overall and per tenth")
    compress.add_argument("--quiet", action="store_true", help="no progress bar")
    _settings = Settings()
    compress.add_argument("--segments", type=int, default=_settings.segments, help="rows coded in lockstep (B)")
    compress.add_argument("--window", type=int, default=_settings.window, help="symbols per training step (T)")
    compress.add_argument("--hidden", type=int, default=_settings.hidden, help="LSTM cells")
    compress.add_argument("--layers", type=int, default=_settings.layers, help="LSTM layers")
    compress.add_argument("--lr", type=float, default=_settings.lr, help="learning rate")
    compress.add_argument("--optimizer", choices=["sgd", "rmsprop", "adam"], default=_settings.optimizer)
    compress.add_argument("--replay", type=int, default=_settings.replay,
                          help="extra training steps per window on earlier windows")
    compress.add_argument("--seed", type=int, default=_settings.seed, help="seed of the initial weights")
    compress.add_argument("--orders", type=int, nargs="*", default=_settings.orders, metavar="K",
                          help="orders of the context models mixed with the LSTM (none: the LSTM alone)")
    compress.set_defaults(func=cmd_compress)

    decompress = commands.add_parser(
        "decompress", help="restore a file from its .lmz archive",
        description="Decodes the archive, checks the result against the original's SHA-256 and only then "
        "writes it (default: the archive's name without .lmz). Never overwrites a file.", **shown,
    )
    decompress.add_argument("file", metavar="ARCHIVE", help="the archive, or - for standard input")
    decompress.add_argument("-o", "--out", help="the file to write (- for standard output)")
    decompress.add_argument("--model", metavar="RUN", help="the run the archive was made with, if any")
    decompress.add_argument("--quiet", action="store_true", help="no progress bar")
    decompress.set_defaults(func=cmd_decompress)

    report = commands.add_parser(
        "report", help="what the network does inside, as one self-contained HTML page",
        description="One HTML file (images inline, no network needed to open it): run summary and learning "
        "curves, surprise over a held-out passage, cells that track properties of the text, gate "
        "saturation, bits per character by character class against n-gram baselines, the memory curve "
        "when `longmem memory` has measured it, and every tracked value.", **shown,
    )
    _run_arg(report, which=True)
    report.add_argument("-o", "--out", help="the HTML file to write (default: DIR/report.html)")
    report.add_argument("--text", help="read this UTF-8 file instead of the run's test split")
    report.add_argument("--chars", type=int, default=3000, help="characters of the passage read at full resolution")
    report.set_defaults(func=cmd_report)

    graph = commands.add_parser(
        "graph", help="the computation as a flow chart (SVG)",
        description="Draws the model's computation as a reader thinks of it (embedding, each layer and its "
        "gates, state carried between windows, softmax, loss, the optimizer's updates) from the model's own "
        "description; --full draws PyTensor's whole compiled training step. Needs Graphviz's dot program.",
        **shown,
    )
    _run_arg(graph)
    graph.add_argument("-o", "--out", help="the SVG file to write (default: DIR/graph.svg or DIR/graph-full.svg)")
    graph.add_argument("--full", action="store_true", help="every operation of the compiled training step")
    graph.set_defaults(func=cmd_graph)

    inspect = commands.add_parser("inspect", help="step, configuration and parameter digest of a run", **shown)
    inspect.add_argument("run_dir", metavar="DIR", help="run directory")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(func=cmd_inspect)
    return parser


class _ShowDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to each option's help, except where X is None
    (the help then says what happens when the option is not given)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("longmem")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _curve_args(parser: argparse.ArgumentParser) -> None:
    """The settings of a memory curve."""
    parser.add_argument("--positions", type=int, default=2000, help="positions scored for every context k")
    parser.add_argument("--max-context", type=int, default=1024, help="the longest context k")
    parser.add_argument("--seed", type=int, default=0, help="seed of the positions drawn")


def _run_arg(parser: argparse.ArgumentParser, which: bool = False) -> None:
    parser.add_argument("run_dir", metavar="DIR", help="run directory")
    parser.add_argument("--backend", choices=engine.BACKENDS, default=None, help="execution backend (default: the run's)")
    if which:
        _checkpoint_arg(parser)


def _checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", choices=["last", "best"], default="last",
                        help="the parameters of the newest checkpoint, or of the run's best "
                        "evaluation on held-out text (early stopping)")


def cmd_train(args) -> None:
    from longmem import launch

    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        engine.distribute(args.coordinator, args.num_processes, args.process_id)
    if args.resume:
        if args.run_dir:
            raise UserError("give either --resume DIR or --run-dir DIR, not both")
        changes = {key: config.overrides(args, cls) for key, cls in config.SECTIONS.items()}
        state = launch.resume(RunDir(args.resume), changes)
        run_dir = RunDir(args.resume)
    else:
        cfg = config.from_args(args)
        name = Path(cfg.data.text).stem if cfg.data.text else cfg.data.corpus
        run_dir = RunDir(args.run_dir or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
        state = launch.start(cfg, run_dir)
    if engine.processes()[0] == 0:
        print(f"longmem: step {state.step} saved in {run_dir.path}; try: longmem sample {run_dir.path}")


def _load(args):
    """The checkpoint of a run that --checkpoint names and a predictor over its parameters."""
    from longmem.sample import open_run

    return open_run(RunDir(args.run_dir), args.backend, best=args.checkpoint == "best")


def _heldout(args, snap) -> tuple[np.ndarray, str]:
    from longmem.sample import heldout

    return heldout(RunDir(args.run_dir), snap, args.text, getattr(args, "split", "test"))


def cmd_eval(args) -> None:
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


def cmd_guess(args) -> None:
    from longmem.sample import guess_view, marks

    if args.width < 1 or args.chars < 1:
        raise UserError("--width and --chars must be at least 1")
    snap, predictor = _load(args)
    codes, _ = _heldout(args, snap)
    codes = codes[: args.chars + 1]
    result = predictor.evaluate(codes, 1, snap.config.train.seq, guesses=True)
    text = snap.vocab.decode(codes[1 : result.chars + 1])
    # Each character's values are those after the network has read it.
    traced = predictor.trace(codes[: result.chars + 1], snap.config.train.seq, args.show) if args.show else {}
    rows = [marks(values[1:]) for values in traced.values()]
    print(guess_view(text, snap.vocab.decode(result.guesses), args.width, rows))
    if rows:
        print(f"\nunder the guesses, one line each: {', '.join(args.show)}")
    print(f"\naccuracy {100 * result.accuracy:.1f}% over {result.chars:,} characters")


def cmd_sample(args) -> None:
    if args.length < 0:
        raise UserError("--length must be at least 0")
    snap, predictor = _load(args)
    prime = args.prime if args.prime is not None else ("\n" if "\n" in snap.vocab.chars else snap.vocab.chars[0])
    text = predictor.generate(
        snap.vocab, prime, args.length, np.random.default_rng(args.seed), args.temperature, args.top_k
    )
    print(prime + text)


def cmd_caesar(args) -> None:
    from longmem import caesar

    cfg = config.CaesarConfig(**config.overrides(args, config.CaesarConfig))
    config.validate_caesar(dataclasses.replace(cfg))  # each optimizer of --compare has its own lr
    run = RunDir(args.run_dir or Path("runs") / f"caesar-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.compare:
        for path in caesar.compare(cfg, run, Path(args.plots) if args.plots else run.plots):
            print(path)
        return
    result = caesar.train(cfg, run)
    print(caesar.report(result, cfg))
    print(f"run saved in {run.path}; plot the biases with: longmem plot {run.path} hidden.b --select 0,1,2")


def cmd_memory(args) -> None:
    from longmem import memory

    ks = memory.contexts(args.max_context)
    snap, predictor = _load(args)
    codes, _ = _heldout(args, snap)
    run = RunDir(args.run_dir)
    curve = memory.of_run(run, snap, predictor, codes, args.split, args.positions, ks, args.seed, args.text)
    target = Path(args.out) if args.out else run.plots / "memory.png"
    memory.figure({"": curve}, target)
    if args.json:
        print(json.dumps(curve.to_dict() | {"step": snap.step, "figure": str(target)}))
    else:
        print(memory.table(curve))
        print(f"figure: {target}")


def cmd_compare(args) -> None:
    from longmem import compare, memory

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


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    if not path.is_file():
        raise UserError(f"{name}: no such file")
    return path.read_bytes()


def _write_output(out: str, data: bytes) -> None:
    """Write to standard output (-) or a new file, whole or not at all."""
    from longmem.files import atomic_write

    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if Path(out).exists():
        raise UserError(f"{out} exists; give another name with -o or remove it")
    atomic_write(Path(out), data)


def _base_run(name: str | None):
    """A run's parameters, digest and characters, for --model."""
    if name is None:
        return None
    from longmem import checkpoint
    from longmem.rundir import load

    snap = load(RunDir(name))
    if snap.config.model.model != "lstm":
        raise UserError(f"--model {name} is a {snap.config.model.model} run; compress starts from lstm runs")
    return snap.params, checkpoint.digest(snap.params), snap.vocab.chars


def cmd_compress(args) -> None:
    from longmem.compress import Settings, compress, stats, unpack

    out = args.out or ("-" if args.file == "-" else f"{args.file}.lmz")
    if out != "-" and Path(out).exists():
        raise UserError(f"{out} exists; give another name with -o or remove it")
    settings = Settings(args.segments, args.window, args.hidden, args.layers, args.lr, args.optimizer,
                        args.replay, args.seed, args.orders)
    data = _read_input(args.file)
    archive = compress(data, settings, _base_run(args.model), quiet=args.quiet)
    _write_output(out, archive)
    if args.stats:
        print(stats(unpack(archive)[0]), file=sys.stderr if out == "-" else sys.stdout)


def cmd_decompress(args) -> None:
    from longmem.compress import decompress

    if args.out:
        out = args.out
    elif args.file == "-":
        out = "-"
    elif args.file.endswith(".lmz"):
        out = args.file[: -len(".lmz")]
    else:
        raise UserError(f"{args.file} does not end in .lmz: say where to write with -o")
    if out != "-" and Path(out).exists():
        raise UserError(f"{out} exists; give another name with -o or remove it")
    archive = _read_input(args.file)
    data = decompress(archive, _base_run(args.model), quiet=args.quiet,
                      name="the archive" if args.file == "-" else args.file)
    _write_output(out, data)


def cmd_report(args) -> None:
    from longmem import report

    run = RunDir(args.run_dir)
    print(report.build(run, Path(args.out) if args.out else run.path / "report.html", args.text, args.chars,
                       args.backend, best=args.checkpoint == "best"))


def cmd_graph(args) -> None:
    from longmem import engine as eng, graph
    from longmem.files import atomic_write
    from longmem.rundir import load

    run = RunDir(args.run_dir)
    snap = load(run)
    if args.full:
        from longmem.train import Trainer

        snap.config.train.device, snap.config.train.devices = "cpu", "1"  # drawn here, on one device
        trainer = Trainer(snap.config, snap.params, eng.configure(args.backend or snap.config.train.backend, "cpu"))
        dot = graph.full(trainer.step_fn, f"{run.path.name}: the compiled training step")
    else:
        dot = graph.flow_chart(snap.config, len(snap.vocab))
    out = Path(args.out) if args.out else run.path / ("graph-full.svg" if args.full else "graph.svg")
    atomic_write(out, graph.svg(dot))
    print(out)


def cmd_plot(args) -> None:
    from longmem import plot

    runs = [RunDir(item) for item in args.items if RunDir(item).exists()]
    names = args.items[len(runs) :]
    if not runs or any(RunDir(n).exists() for n in names):
        raise UserError("give the run directories first, then the names to plot")
    labels = args.names or ([r.path.name for r in runs] if len(runs) > 1 else [""])
    if len(labels) != len(runs):
        raise UserError(f"--names gives {len(labels)} labels for {len(runs)} runs")
    if args.smooth < 1:
        raise UserError("--smooth must be at least 1")
    opts = plot.Options(args.smooth, plot.parse_crop(args.crop), plot.parse_select(args.select), args.diff)
    for path in plot.plot_runs(runs, labels, names, opts, Path(args.out) if args.out else None, args.show):
        print(path)


def cmd_inspect(args) -> None:
    from longmem import checkpoint
    from longmem.rundir import load

    from longmem.train import TrainState, finished, learning_rate

    snap = load(RunDir(args.run_dir))
    state = snap.meta["state"]
    report = {
        "step": state["step"],
        "finished": finished(snap.config.train, state["step"], state.get("elapsed", 0.0)),
        "epoch": state["cursor"]["epoch"],
        "checkpoint": snap.path.name,
        "best_step": state.get("best_step"),
        "best_bpc": state.get("best_bpc"),
        "lr": learning_rate(snap.config.optim, TrainState.from_meta(state, str(snap.path))),
        "params": int(sum(a.size for a in snap.params.values())),
        "digest": checkpoint.digest(snap.params),
        "vocab_size": len(snap.vocab),
        "config": snap.config.to_dict(),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"run         {args.run_dir}")
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


if __name__ == "__main__":
    sys.exit(main())
