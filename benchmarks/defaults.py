"""Candidate regularisation settings on a grid of texts and budgets: which default
loses least, in the worst case, against the best candidate of each cell.

    python benchmarks/defaults.py --out runs/defaults [--candidates none 0.3] [--texts huck-finn]

A cell is a text and a budget. The budgets are steps, not minutes, so that a
busy machine changes no figure (each is given beside its minutes at the
default model's speed on a quiet 2-core machine, about 350 steps a minute;
python-stdlib's larger vocabulary makes its steps slower). The texts:

- python-docs, the built-in corpus (460 KB), 1,750 steps (5 minutes);
- huck-finn, ../shared/data/huck_fin.txt (skipped when absent), 1,400 and 7,000 steps (4 and 20 minutes);
- python-stdlib, the built-in 12 MB of Python source, 1,500 and 6,000 steps (5 and 20 minutes: about 1 and
  4.5 passes);
- vim-manual, the first 3 MB of the Vim manual (/usr/share/vim/vim*/doc/*.txt in name
  order, skipped when absent: English prose about an editor, a text no setting was
  tuned on), 1,750 steps (5 minutes).

A candidate is a set of `longmem train` flags: `none` (--dropout 0 --weight-drop 0),
`0.1`, `0.2`, `0.3` (both at that value; 0.3 was the default before the automatic
choice) and `auto` (no flags: the default, which chooses by the expected passes).

`--model NAME` trains that model instead of the LSTM, and `--rates R ...` makes every
candidate one column per learning rate (`auto lr 0.002`: the candidate's flags and
`--lr 0.002`), to choose a model's rate on the same grid.

A fixed candidate trains one run per text and is extended budget by budget
(`longmem train --resume --steps N`: a resumed run is the run it would have been);
`auto` trains a run per cell, since what it chooses depends on the budget. Each
cell's run is scored on the test split with its last parameters and with those of
its best validation. Results go to OUT/results.jsonl as they come, so the script can
be stopped and started again (what is recorded is not run again); the table is
printed at the end and written to OUT/table.md.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

from models import longmem

BOOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "huck_fin.txt"
VIM_CHARS = 3_000_000

CANDIDATES = {"none": ["--dropout", 0, "--weight-drop", 0], "0.1": ["--dropout", 0.1, "--weight-drop", 0.1],
              "0.2": ["--dropout", 0.2, "--weight-drop", 0.2], "0.3": ["--dropout", 0.3, "--weight-drop", 0.3],
              "auto": []}
BUDGETS = {"python-docs": [(1750, 5)], "huck-finn": [(1400, 4), (7000, 20)], "python-stdlib": [(1500, 5), (6000, 20)],
           "vim-manual": [(1750, 5)]}


def source(text: str, out: Path) -> list | None:
    """The `longmem train` flags that give the text, or None when this machine lacks it."""
    if text in ("python-docs", "python-stdlib"):
        return ["--corpus", text]
    if text == "huck-finn":
        return ["--text", BOOK] if BOOK.exists() else None
    files = sorted(glob.glob("/usr/share/vim/vim*/doc/*.txt"))
    if not files:
        return None
    path = out / "vim-manual.txt"
    if not path.exists():
        chars = "".join(Path(f).read_text(encoding="utf-8", errors="replace") for f in files)[:VIM_CHARS]
        path.write_text(chars, encoding="utf-8")
    return ["--text", path]


def train(run: Path, steps: int, flags: list) -> None:
    """Bring `run` to `steps` steps: start it, or resume it with the larger goal."""
    if (run / "config.json").exists():
        longmem("train", "--resume", run, "--steps", steps, capture=False)
    else:
        longmem("train", *flags, "--steps", steps, "--run-dir", run, capture=False)


def score(run: Path) -> dict:
    """Test bpc and accuracy of the last and of the best-validation parameters, and the passes."""
    last = json.loads(longmem("eval", run, "--json"))
    best = json.loads(longmem("eval", run, "--json", "--checkpoint", "best"))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((run / "config.json").read_text())
    model = config["config"]["model"]
    rates = sorted(m["chars_per_s"] for m in metrics if "chars_per_s" in m)
    return {"bpc": last["bpc"], "accuracy": last["accuracy"], "best_bpc": best["bpc"],
            "best_accuracy": best["accuracy"], "best_step": best["step"], "minutes": metrics[-1]["elapsed"] / 60,
            "chars_per_s": rates[len(rates) // 2] if rates else None, "train_chars": config["split"]["train"][1]
            - config["split"]["train"][0], "dropout": model["dropout"], "weight_drop": model["weight_drop"],
            "auto": config.get("auto")}


def columns(candidates: list[str], rates: list[float] | None) -> dict[str, list]:
    """Each column's name and its `longmem train` flags: a candidate, or a candidate at a rate."""
    if not rates:
        return {c: CANDIDATES[c] for c in candidates}
    return {f"{c} lr {r:g}": [*CANDIDATES[c], "--lr", r] for c in candidates for r in rates}


def table(results: list[dict]) -> str:
    """One row per cell, one column per candidate (test bpc of the last parameters), the best
    of each cell in bold; then each candidate's worst loss against the best of a cell."""
    names = list(dict.fromkeys(r["candidate"] for r in results))
    cells = sorted({(r["text"], r["steps"]) for r in results}, key=lambda c: (list(BUDGETS).index(c[0]), c[1]))
    at = {(r["text"], r["steps"], r["candidate"]): r for r in results}
    lines = ["| text | steps (minutes) | passes | " + " | ".join(names) + " |", "|---" * (len(names) + 3) + "|"]
    worst = dict.fromkeys(names, 0.0)
    complete = dict.fromkeys(names, True)
    for text, steps in cells:
        found = {c: at[text, steps, c] for c in names if (text, steps, c) in at}
        best = min(r["bpc"] for r in found.values())
        minutes = dict(BUDGETS[text])[steps]
        passes = steps * 128 * 64 / next(iter(found.values()))["train_chars"]
        row = []
        for c in names:
            if c not in found:
                row.append("")
                complete[c] = False
                continue
            bpc = found[c]["bpc"]
            worst[c] = max(worst[c], bpc - best)
            shown = f"{bpc:.3f}" + (f" ({found[c]['auto']['dropout']:g})" if c.startswith("auto") else "")
            row.append(f"**{shown}**" if bpc == best else shown)
        lines.append(f"| {text} | {steps:,} ({minutes:g}) | {passes:.1f} | " + " | ".join(row) + " |")
    lines.append("| worst loss against a cell's best | | | " + " | ".join(
        f"{worst[c]:+.3f}" + ("" if complete[c] else " (not every cell)") for c in names) + " |")
    chosen = min((c for c in names if complete[c]), key=lambda c: worst[c], default=None)
    return "\n".join(lines) + f"\n\nsmallest worst-case loss over the cells every candidate has: {chosen}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/defaults"))
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    parser.add_argument("--texts", nargs="+", choices=list(BUDGETS), default=list(BUDGETS))
    parser.add_argument("--up-to", type=int, help="leave out the budgets of more steps than this")
    parser.add_argument("--model", default="lstm", help="the model every run trains (default: lstm)")
    parser.add_argument("--rates", nargs="+", type=float, help="learning rates: each candidate at each")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    results = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []
    done = {(r["text"], r["steps"], r["candidate"]) for r in results}
    model = [] if args.model == "lstm" else ["--model", args.model]
    for text in args.texts:
        flags = source(text, args.out)
        if flags is None:
            print(f"defaults: {text} is not on this machine; skipped")
            continue
        for candidate, chosen in columns(args.candidates, args.rates).items():
            for steps, _ in BUDGETS[text]:
                if (text, steps, candidate) in done or (args.up_to is not None and steps > args.up_to):
                    continue
                name = candidate.replace(" ", "-")
                run = args.out / (f"{text}-{name}-{steps}" if candidate.startswith("auto") else f"{text}-{name}")
                train(run, steps, [*flags, *model, *chosen])
                result = {"text": text, "steps": steps, "candidate": candidate, **score(run)}
                results.append(result)
                with results_path.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                print(f"defaults: {text}, {steps} steps, {candidate}: test bpc {result['bpc']:.3f} "
                      f"(best validation's {result['best_bpc']:.3f}), {result['minutes']:.1f} minutes")
    shown = table(results)
    (args.out / "table.md").write_text(shown)
    print(shown)


if __name__ == "__main__":
    main()
