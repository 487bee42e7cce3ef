"""How far back each model remembers, measured by the same instruments: every model
trained for the same wall minutes on python-stdlib and on each probe, then its
held-out bpc, memory curve, influence and probe accuracy by distance.

    python benchmarks/memory_models.py --minutes 20 --out runs/memory

Runs, each in OUT/<model>-<corpus>: `lstm` (the default 1 x 256, windows of 64),
`lstm-2x512` (2 layers of 512), and at the LSTM's parameter count (within 4%,
558K on python-stdlib) `hmlstm` (3 layers of 116, windows of 64 like the
LSTM's), `mingru` (3 blocks of 128), `minlstm` (3 of 124), `mlstm` and `slstm`
(3 of 112, 4 heads) and `transformer` (3 blocks of 120, 4 heads, context 256),
these with windows of 256 characters in 32 streams: the LSTM's 8,192 characters a step, in windows
four times as long (the window is where a model that reads a window at once
gains; the characters a step are kept, so each makes as many updates for its
speed). On `python-stdlib` and on `probe:copy`, `probe:selective-copy` and
`probe:recall` (their default sizes and distances, 16:1024, or --probe-distance;
--probe-minutes gives the probes a budget of their own, --probe-steps one in steps,
which is what leaving a probe's plateau takes; --steps is python-stdlib's in steps).
Each run is then measured: `longmem eval` (test split), `longmem memory --influence` (--max-context, default 4096 on
python-stdlib and 1024 on the probes), and for a probe `longmem probe` (16, 64,
256, 1024, 4096 and the trained range's ends). The table is printed and written
to OUT/memory.md; `longmem compare` per corpus writes OUT/compare-<corpus>/ (its
memory.png has every run's memory curve), every run's influence by lag is drawn
in OUT/influence-<corpus>.png and every probe run's accuracy by distance in
OUT/probes.png.

A run folder that already holds a run is resumed (a finished one is left as it is,
and its stored measurements are read back), so the script can be stopped at any
moment, started again, and extended with --models and --corpora.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models import longmem, train

from longmem.rundir import RunDir
from longmem.study import influence, probe
from longmem.study.memory import lost_mark

LONG = ["--batch", 32, "--seq", 256]  # windows of 256, the LSTM's 8,192 characters a step
MODELS = {"lstm": [], "lstm-2x512": ["--layers", 2, "--hidden", 512],
          "hmlstm": ["--model", "hmlstm", "--layers", 3, "--hidden", 116],
          "mingru": ["--model", "mingru", "--layers", 3, "--hidden", 128, *LONG],
          "minlstm": ["--model", "minlstm", "--layers", 3, "--hidden", 124, *LONG],
          "mlstm": ["--model", "mlstm", "--layers", 3, "--hidden", 112, "--heads", 4, *LONG],
          "slstm": ["--model", "slstm", "--layers", 3, "--hidden", 112, "--heads", 4, *LONG],
          "transformer": ["--model", "transformer", "--layers", 3, "--hidden", 120, "--heads", 4, "--context", 256,
                          *LONG]}
CORPORA = ["python-stdlib", "probe:copy", "probe:selective-copy", "probe:recall"]


def measure(run: Path, corpus: str, max_context: int) -> dict:
    """What the table says of one run."""
    shown = json.loads(longmem("inspect", run, "--json"))
    evaluated = json.loads(longmem("eval", run, "--json"))
    curve = json.loads(longmem("memory", run, "--max-context", max_context, "--influence", "--json"))
    row = {"run": run.name, "params": shown["params"], "steps": shown["step"], "bpc": evaluated["bpc"],
           "accuracy": evaluated["accuracy"], "memory_length": curve["memory_length"],
           "max_context": max_context, "long_context_gain": curve["long_context_gain"], "lost": curve.get("lost"),
           "influence_reach": curve["influence"]["reach"], "influence": curve["influence"]}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [m["chars_per_s"] for m in metrics if "chars_per_s" in m]
    row["chars_per_s"] = sorted(rates)[len(rates) // 2] if rates else None
    if corpus.startswith("probe:"):
        probed = json.loads(longmem("probe", run, "--json"))
        row["probe"] = {d: a for d, a in zip(probed["distances"], probed["accuracy"])}
        row["probe_reach"] = probed["reach"]
        row["chance"] = probed["chance_accuracy"]
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| run | parameters | steps | test bpc | accuracy | memory length | long-context gain | "
             "influence reach | probe accuracy by distance | probe reach | training chars/s |",
             "|---" * 11 + "|"]
    for r in rows:
        length = r["memory_length"] if r["memory_length"] is not None else f"> {r['max_context']}"
        length = f"{length}{lost_mark(r.get('lost'))}"  # the curve measures cold starts too
        gain = "n/a" if r["long_context_gain"] is None else f"{r['long_context_gain']:.3f}"
        by_distance = ", ".join(f"{d}: {a:.0%}" for d, a in r["probe"].items()) + f" (chance {r['chance']:.0%})" \
            if "probe" in r else ""
        reach = r.get("probe_reach") or ("none" if "probe" in r else "")
        rate = f"{r['chars_per_s']:,.0f}" if r["chars_per_s"] else "n/a"
        lines.append(f"| {r['run']} | {r['params']:,} | {r['steps']:,} | {r['bpc']:.3f} | {r['accuracy']:.1%} | "
                     f"{length} | {gain} | {r['influence_reach']} | {by_distance} | {reach} | {rate} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall minutes per run on python-stdlib")
    parser.add_argument("--steps", type=int,
                        help="steps per run on python-stdlib, in place of minutes: a budget that other work on "
                             "the machine cannot change (e.g. --minutes at a speed measured on a quiet machine)")
    parser.add_argument("--probe-minutes", type=float, help="wall minutes per run on a probe (default: --minutes)")
    parser.add_argument("--probe-steps", type=int,
                        help="steps per run on a probe, in place of minutes: a probe's plateau is left after "
                             "a number of updates, and the models differ in speed")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--corpora", nargs="+", default=CORPORA, choices=CORPORA)
    parser.add_argument("--max-context", type=int, default=4096, help="memory curve's longest context (python-stdlib)")
    parser.add_argument("--probe-distance", metavar="LO:HI", help="the probes' training distances (default 16:1024)")
    parser.add_argument("--lr", type=float,
                        help="every run's learning rate (default: longmem's); the run folders are named -lrX")
    parser.add_argument("--seed", type=int,
                        help="every run's seed (default: longmem's); the run folders are named -sN")
    parser.add_argument("--out", type=Path, default=Path("runs/memory"))
    args = parser.parse_args()
    rows, probed, influences = [], {}, {}
    for corpus in args.corpora:
        is_probe = corpus.startswith("probe:")
        minutes = args.probe_minutes if is_probe and args.probe_minutes else args.minutes
        steps = args.probe_steps if is_probe else args.steps
        goal = ["--steps", steps] if steps else ["--minutes", minutes]
        distance = ["--probe-distance", args.probe_distance] if is_probe and args.probe_distance else []
        rate = ["--lr", args.lr] if args.lr else []
        seed = ["--seed", args.seed] if args.seed is not None else []
        suffix = f"{f'-lr{args.lr:g}' if args.lr else ''}{f'-s{args.seed}' if seed else ''}"
        runs = [train(args.out, f"{model}{suffix}-{corpus.replace(':', '-')}",
                      ["--corpus", corpus], None, *goal, *MODELS[model], *distance, *rate, *seed)
                for model in args.models]
        for run in runs:
            rows.append(measure(run, corpus, 1024 if is_probe else args.max_context))
            influences.setdefault(corpus, {})[run.name] = influence.Influence.of(rows[-1].pop("influence"))
            if is_probe:
                snap_step = rows[-1]["steps"]
                probed[run.name] = probe.stored(RunDir(run), snap_step)
        longmem("compare", *runs, "--out", args.out / f"compare-{corpus.replace(':', '-')}",
                "--max-context", 1024 if is_probe else args.max_context)
    table = markdown(rows)
    print(table)
    (args.out / "memory.md").write_text(table)
    for corpus, curves in influences.items():
        path = args.out / f"influence-{corpus.replace(':', '-')}.png"
        influence.figure(curves, path)
        print(f"figure: {path}")
    if probed:
        probe.figure({name: curve for name, curve in probed.items() if curve}, args.out / "probes.png")
        print(f"figure: {args.out / 'probes.png'}")


if __name__ == "__main__":
    main()
