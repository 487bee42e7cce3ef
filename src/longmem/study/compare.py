"""Finished runs side by side: one table (Markdown and JSON) and three figures.

Held-out evaluation, the memory curve and (for a run trained on a probe) the
probe curve are read from each run when they were computed before for its
newest checkpoint, and computed and stored in the run otherwise (see
RunDir.cached).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from longmem import checkpoint
from longmem.errors import UserError
from longmem.files import atomic_write
from longmem.plot import Curve, Panel, figure
from longmem.predict import cached_eval, heldout_codes, open_run
from longmem.rundir import RunDir
from longmem.study import memory, probe

COLUMNS = [  # key, heading, format
    ("run", "run", "{}"), ("model", "model", "{}"), ("params", "parameters", "{:,}"),
    ("steps", "steps", "{:,}"), ("chars_seen", "characters seen", "{:,}"),
    ("train_minutes", "training minutes", "{:.1f}"), ("params_step", "scored step", "{:,}"),
    ("bpc", "held-out bpc", "{:.3f}"),
    ("accuracy", "accuracy", "{:.1%}"), ("best_val_bpc", "best validation bpc", "{:.3f}"),
    ("best_val_minutes", "at minute", "{:.1f}"), ("memory_length", "memory length", "{}"),
    ("long_context_gain", "long-context gain", "{:.3f}"), ("probe_reach", "probe reach", "{}"),
    ("chars_per_s", "training chars/s", "{:,.0f}"),
]


def row(run: RunDir, label: str, backend: str | None, positions: int, ks: list[int],
        seed: int, val: dict[str, np.ndarray], best: bool = False) -> tuple[dict, memory.Curve]:
    """What the table says of one run (of its newest parameters, or with `best` those of
    its best evaluation), and its memory curve (test split, default contexts)."""
    snap, predictor = open_run(run, backend, best, reads_text="comparison")
    codes, _ = heldout_codes(run, snap)
    state, t = snap.meta["state"], snap.config.train
    found = cached_eval(run, snap, predictor, codes)
    curve = memory.of_run(run, snap, predictor, codes, "test", positions, ks, seed)
    timed = t.chars(state.get("timed_steps", 0))
    reach = None
    if probe.trained_on(run):  # a probe run: how far back it holds 90%
        probed = probe.of_run(run, snap, predictor, probe.of_config(run))
        reach = f"{probed.probe['name']} {probed.reach or 'none'}"
    best = int(np.argmin(val["bpc"])) if len(val["bpc"]) else None
    return {
        "run": label, "model": snap.config.model.model,
        "params": checkpoint.count(snap.params),
        "steps": state["step"], "params_step": snap.step, "chars_seen": t.chars(state["step"]),
        "train_minutes": state["elapsed"] / 60, "bpc": found["bpc"], "accuracy": found["accuracy"],
        "best_val_bpc": None if best is None else float(val["bpc"][best]),
        "best_val_minutes": None if best is None or np.isnan(val["minutes"][best]) else float(val["minutes"][best]),
        "memory_length": curve.memory_length, "long_context_gain": curve.long_context_gain, "probe_reach": reach,
        "max_context": curve.contexts[-1], "lost": curve.lost,
        "chars_per_s": timed / state["train_seconds"] if state.get("train_seconds") else None,
    }, curve


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(heading for _, heading, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = ["n/a" if r[key] is None else fmt.format(r[key]) for key, _, fmt in COLUMNS]
        at = [k for k, _, _ in COLUMNS].index("memory_length")
        if r["memory_length"] is None:
            cells[at] = f"> {r['max_context']}"
        cells[at] += memory.lost_mark(r.get("lost"))  # the curve measures cold starts too
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare(runs: list[RunDir], labels: list[str], out: Path, backend: str | None = None,
            positions: int = 2000, ks: list[int] | None = None, seed: int = 0, best: bool = False) -> list[Path]:
    """Write compare.md, compare.json and the figures into `out`; return their paths."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    ours = [out / n for n in ("compare.md", "compare.json", "bpc-vs-time.png", "bpc-vs-chars.png", "memory.png")]
    if not (out / "compare.json").is_file() and any(p.exists() for p in ours):
        # A folder a previous compare wrote (it holds compare.json) is written again.
        mine = next(p for p in ours if p.exists())
        raise UserError(f"--out {out} holds {mine.name}, not written by longmem compare; give a new or empty folder")
    rows, curves, val = [], {}, {}
    for run, label in zip(runs, labels):
        val[label] = validation(run)
        r, curves[label] = row(run, label, backend, positions, ks or memory.contexts(1024), seed, val[label], best)
        rows.append(r)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "compare.md", out / "compare.json"]
    atomic_write(written[0], (markdown(rows) + _texts_note(runs)).encode())
    atomic_write(written[1], (json.dumps({"runs": rows}, indent=1) + "\n").encode())
    for x, name, xlabel in (("minutes", "bpc-vs-time.png", "training minutes (wall)"),
                            ("chars", "bpc-vs-chars.png", "characters seen")):
        lines = [Curve(label, v[x], v["bpc"][:, None]) for label, v in val.items() if len(v["bpc"])]
        if lines:
            written.append(figure([Panel("held-out (validation) bpc", "bits per character", lines, xlabel)],
                                  out / name))
    written.append(memory.figure(curves, out / "memory.png"))
    return written


def _texts_note(runs: list[RunDir]) -> str:
    """A line for the table (and a warning) when the runs trained on different texts, whose
    bits per character do not compare."""
    texts = {run.read_config().get("text_sha256") for run in runs}
    if len(texts) < 2:
        return ""
    note = f"These runs trained on {len(texts)} different texts: their bits per character do not compare."
    print(f"longmem: warning: {note}", file=sys.stderr)
    return f"\n{note}\n"


def validation(run: RunDir) -> dict[str, np.ndarray]:
    """Validation bpc of a run against steps, wall minutes and characters seen, from metrics.jsonl."""
    rows = [r for r in run.metric_records() if "val_bpc" in r]
    t = run.run_config(run.read_config()).train
    steps = np.array([r["step"] for r in rows])
    return {"bpc": np.array([r["val_bpc"] for r in rows]),
            "minutes": np.array([r.get("elapsed", np.nan) / 60 for r in rows]),
            "steps": steps, "chars": t.chars(steps)}
