"""`longmem report`: what a run's network does inside, as one self-contained HTML page.

Everything comes from the run's newest checkpoint and its files: the
held-out evaluation, one compiled forward pass over a held-out passage at
full resolution (every character, every unit), the training split for the
n-gram baselines, the stored memory curve, and the tracked values. Images
are inline PNGs and there is no script, so the page opens anywhere.

The analyses are NumPy functions on arrays (`properties`, `best_cells`,
`saturation`, `classes`), tested apart from the page.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longmem import checkpoint, plot, track
from longmem.errors import UserError
from longmem.files import atomic_write
from longmem.nets import NETS
from longmem.predict import cached_eval, heldout_codes, open_run
from longmem.rundir import RunDir
from longmem.study import graph, influence, memory, probe
from longmem.study.ngram import KneserNey

SATURATED = 0.1  # a gate below this is left-saturated, above 1 - this right-saturated
NGRAM_ORDERS = (3, 5)
CELL_VIEW_CHARS = 600  # characters each cell is shown over
MAX_BITS = 8.0  # surprise colour scale: white at 0 bits, full red at this
LEANED_LAGS = 128  # the hover's earlier characters are looked for this far back
LEANED_SHOWN = 3  # ... and this many shown


# --- the analyses ----------------------------------------------------------------------------


def properties(text: str) -> dict[str, np.ndarray]:
    """Simple properties of a text, per character, as they stand after reading it."""
    quote = paren = italic = line = word = sentence = 0
    rows = []
    for ch in text:
        if ch in "“‘" or (ch == '"' and not quote):
            quote = 1
        elif ch in "”" or ch == '"':
            quote = 0
        paren = paren + 1 if ch == "(" else max(0, paren - 1) if ch == ")" else paren
        italic = 1 - italic if ch == "_" else italic
        line = 0 if ch == "\n" else line + 1
        word = word + 1 if ch.isalpha() else 0
        sentence = 0 if ch in ".!?" else sentence + 1
        rows.append((quote, min(paren, 1), italic, line, word, sentence))
    names = ["inside quotes", "inside parentheses", "inside _italics_", "position in the line",
             "position in the word", "characters since the sentence began"]
    table = np.array(rows, dtype=np.float64).reshape(-1, len(names))
    return {name: table[:, j] for j, name in enumerate(names)}


@dataclass
class Cell:
    name: str  # the internal value, e.g. lstm.0.c
    unit: int
    r: float  # Pearson correlation with the property (for range cells: the activation range)

    @property
    def label(self) -> str:
        return f"{self.name}[{self.unit}]"


def correlations(values: np.ndarray, prop: np.ndarray) -> np.ndarray:
    """Pearson correlation of each unit (column of values (n, H)) with prop (n,); 0 where
    either is constant."""
    a = values - values.mean(axis=0)
    b = prop - prop.mean()
    scale = np.sqrt((a * a).sum(axis=0) * (b * b).sum())
    return np.divide(a.T @ b, scale, out=np.zeros(values.shape[1]), where=scale > 0)


def best_cells(internals: dict[str, np.ndarray], props: dict[str, np.ndarray]) -> dict[str, Cell]:
    """For each property, the unit of the given internals (n, H) that tracks it best
    (largest absolute correlation)."""
    found = {}
    for prop_name, prop in props.items():
        candidates = [Cell(name, int(np.argmax(np.abs(r))), float(r[np.argmax(np.abs(r))]))
                      for name, values in internals.items()
                      for r in [correlations(values.astype(np.float64), prop)]]
        if candidates and prop.std() > 0:
            found[prop_name] = max(candidates, key=lambda c: abs(c.r))
    return found


def widest_cells(internals: dict[str, np.ndarray], count: int = 3) -> list[Cell]:
    """The units with the largest activation range over the passage."""
    cells = [Cell(name, int(u), float(values[:, u].max() - values[:, u].min()))
             for name, values in internals.items() for u in range(values.shape[1])]
    return sorted(cells, key=lambda c: -c.r)[:count]


def saturation(gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit of a gate's values (n, H): the fraction of characters it is below
    SATURATED (left) and above 1 - SATURATED (right)."""
    return (gate < SATURATED).mean(axis=0), (gate > 1 - SATURATED).mean(axis=0)


CLASSES = ["newline", "space", "capital letter", "letter starting a word", "letter inside a word", "digit",
           "punctuation and other"]


def classes(text: str) -> np.ndarray:
    """The class (an index into CLASSES) of each character of text[1:], as a prediction target."""
    out = np.empty(max(0, len(text) - 1), dtype=np.int64)
    for i in range(1, len(text)):
        ch, before = text[i], text[i - 1]
        out[i - 1] = (0 if ch == "\n" else 1 if ch == " " else 2 if ch.isupper()
                      else (4 if before.isalpha() else 3) if ch.isalpha() else 5 if ch.isdigit() else 6)
    return out


# --- the page -------------------------------------------------------------------------------


def build(run: RunDir, out: Path, text: str | None = None, chars: int = 3000, backend: str | None = None,
          best: bool = False) -> Path:
    """Write the report of `run` to `out` (whole or not at all), of its newest parameters or
    (`best`) those of its best evaluation; return `out`."""
    if chars < 2:
        raise UserError("--chars must be at least 2")
    started = time.perf_counter()
    snap, predictor = open_run(run, backend, best, reads_text="report")
    codes, what = heldout_codes(run, snap, text)
    evaluated = cached_eval(run, snap, predictor, codes) if text is None else \
        predictor.evaluate_heldout(codes, snap.config.train.batch, snap.config.train.seq).to_dict()
    passage = codes[: chars + 1]
    log_p, internals = predictor.internals(passage, snap.config.train.seq)
    passage_text = snap.vocab.decode(passage)
    bits = -log_p[np.arange(len(passage) - 1), passage[1:]] / np.log(2)  # log_p[i] predicts passage[i + 1]
    lags = min(LEANED_LAGS, len(passage) - 1)
    leaned = influence.by_lag(predictor, passage, np.arange(lags, len(passage)), lags)  # passage[lags:]
    info = run.read_config()
    train_codes = run.splits(info, run.load_text(info, snap.config).codes)["train"]
    sections = [
        _summary(run, snap, evaluated, what),
        _surprise(passage_text, bits, log_p, snap.vocab.chars, leaned),
        _cells(passage_text, internals),
        _gates(internals),
        _errors(passage_text, passage, bits, train_codes, len(snap.vocab)),
        _memory(run, snap),
        _probe(run, snap),
        _tracks(run),
        _graph(snap),
    ]
    title = f"longmem report: {run.path.name}"
    page = PAGE.format(title=html.escape(title), style=STYLE, body="\n".join(sections),
                       footer=html.escape(f"built by longmem in {time.perf_counter() - started:.1f} s from "
                                          f"{snap.path.name}"))
    atomic_write(out, page.encode())
    return out


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head>
<body><h1>{title}</h1>
{body}
<footer>{footer}</footer>
</body></html>
"""

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
section { margin-bottom: 2.5em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.text { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.5; font-size: 13px;
        border: 1px solid #ddd; padding: 0.6em; }
.text span { border-radius: 2px; }
.note { color: #666; font-size: 0.9em; }
img { max-width: 100%; }
footer { color: #888; font-size: 0.8em; }
"""


def _section(key: str, title: str, *parts: str) -> str:
    return f'<section id="{key}"><h2>{html.escape(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def _image(fig, alt: str) -> str:
    data = base64.b64encode(plot.png(fig)).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(head: list[str] | None, rows: list[list]) -> str:
    heading = f"<tr>{_table_row(head, 'th')}</tr>" if head else ""
    return "<table>" + heading + "".join(f"<tr>{_table_row(r, 'td')}</tr>" for r in rows) + "</table>"


def _table_row(row: list, tag: str) -> str:
    return "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in row)


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _char(ch: str) -> str:
    return "↵\n" if ch == "\n" else html.escape(ch)


def _colored(text: str, colors: list[str], titles: list[str] | None = None) -> str:
    spans = []
    for i, ch in enumerate(text):
        title = f' title="{html.escape(titles[i])}"' if titles else ""
        spans.append(f'<span style="background:{colors[i]}"{title}>{_char(ch)}</span>')
    return '<div class="text">' + "".join(spans) + "</div>"


def _summary(run: RunDir, snap, evaluated: dict, what: str) -> str:
    cfg, state = snap.config, snap.meta["state"]
    t = cfg.train
    rows = [["model", cfg.model.model], ["size", NETS[cfg.model.model].describe(cfg.model)],
            ["parameters", f"{checkpoint.count(snap.params):,}"], ["steps", f"{state['step']:,}"],
            ["parameters of step", f"{snap.step:,}"],
            ["characters seen", f"{t.chars(state['step']):,}"],
            ["training minutes", f"{state.get('elapsed', 0) / 60:.1f}"],
            [f"bits per character ({what})", f"{evaluated['bpc']:.3f}"],
            [f"next-letter accuracy ({what})", f"{evaluated['accuracy']:.1%}"]]
    curves = plot.learning_curves(run)
    parts = [_table(None, rows)]
    if curves:
        lines = [plot.Curve(plot.CURVE_NAMES[key], steps, values[:, None]) for key, (steps, values) in curves.items()]
        parts.append(_image(plot.draw([plot.Panel("learning curves", "bits per character", lines)]),
                            "learning curves"))
    return _section("summary", "Run summary", *parts)


def _surprise(text: str, bits: np.ndarray, log_p: np.ndarray, chars: str, leaned: np.ndarray) -> str:
    """Each character of text[1:] coloured by the bits the model spent on it; its title the
    model's best guesses and (from `leaned`, the influence by lag of text[-len(leaned):])
    the earlier characters its prediction leaned on most."""
    lp = log_p[:-1]  # lp[i] predicts text[i + 1]
    top = np.argsort(-lp, axis=1)[:, :3]
    colors = [f"rgba(214,39,40,{min(b, MAX_BITS) / MAX_BITS:.2f})" for b in bits]
    titles = [f"{b:.2f} bits; guesses: " + ", ".join(f"{_show(chars[k])} {np.exp(lp[i, k]):.2f}" for k in top[i])
              for i, b in enumerate(bits)]
    lags, first = leaned.shape[1], len(text) - len(leaned)
    for j, norms in enumerate(leaned, start=first):  # text[j] was predicted leaning on text[j - k]
        share = norms / max(norms.sum(), 1e-30)
        strongest = np.argsort(-norms)[:LEANED_SHOWN] + 1
        titles[j - 1] += "; leaned on: " + ", ".join(f"{_show(text[j - k])} {k} back ({share[k - 1]:.0%})"
                                                     for k in strongest)
    return _section("surprise", "Surprise over text",
                    _note(f"{len(bits):,} held-out characters, each coloured by the bits the model spent on it "
                          f"(white 0, red {MAX_BITS:g} or more; mean {bits.mean():.3f}). Hover over a character "
                          f"for the model's three best guesses and, from the {lags + 1}th on, the "
                          f"{LEANED_SHOWN} earlier characters its prediction leaned on most: the largest gradients "
                          f"of its log-probability with respect to the inputs, reading the {lags} characters "
                          "before it from the initial state (longmem memory --influence), with their share."),
                    _colored(text[1:], colors, titles))


def _show(ch: str) -> str:
    return {"\n": "↵", " ": "␣"}.get(ch, ch)


def _layers(internals: dict[str, np.ndarray], kinds: tuple[str, ...]) -> dict[str, dict[str, np.ndarray]]:
    """The (n, H) internals of the given kinds (the part after the last dot), by layer."""
    layers: dict[str, dict[str, np.ndarray]] = {}
    for name, values in internals.items():
        layer, _, kind = name.rpartition(".")
        if kind in kinds and values.ndim == 2:
            layers.setdefault(layer or name, {})[name] = values
    return layers


def _cell_view(text: str, values: np.ndarray) -> str:
    v = values[:CELL_VIEW_CHARS]
    v = v / (np.abs(v).max() or 1.0)
    colors = [f"rgba(214,39,40,{x:.2f})" if x >= 0 else f"rgba(31,119,180,{-x:.2f})" for x in v]
    return _colored(text[: len(v)], colors)


def _cells(text: str, internals: dict[str, np.ndarray]) -> str:
    props = properties(text)
    parts = [_note("For each layer and each property of the text, the unit (of h or c) whose activation "
                   "correlates best with it over the passage (Pearson r), shown over the start of the passage "
                   "(red positive, blue negative); then the units with the widest range, whatever they track.")]
    layers = _layers(internals, ("h", "c"))
    if not layers:
        parts.append(_note("This model records no h or c values."))
    for layer, found in layers.items():
        best = best_cells(found, props)
        parts.append(f"<h3>{html.escape(layer)}</h3>")
        parts.append(_table(["property", "unit", "r"], [[p, c.label, f"{c.r:+.3f}"] if (c := best.get(p)) else
                                                        [p, "(does not vary in this passage)", ""] for p in props]))
        for prop, cell in best.items():
            parts.append(f"<h4>{html.escape(prop)}: {html.escape(cell.label)}, r = {cell.r:+.3f}</h4>")
            parts.append(_cell_view(text, found[cell.name][:, cell.unit]))
        for cell in widest_cells(found):
            parts.append(f"<h4>widest range: {html.escape(cell.label)} ({cell.r:.2f})</h4>")
            parts.append(_cell_view(text, found[cell.name][:, cell.unit]))
    return _section("cells", "Cells that mean something", *parts)


def _gates(internals: dict[str, np.ndarray]) -> str:
    layers = _layers(internals, ("i", "f", "o"))
    if not layers:
        return _section("gates", "Gates", _note("This model records no input, forget and output gates."))
    plt = plot.pyplot()
    fig, axes = plt.subplots(2, len(layers), figsize=(4.5 * len(layers), 8), squeeze=False)
    rows = []
    for j, (layer, gates) in enumerate(layers.items()):
        ax = axes[0, j]
        for name, values in sorted(gates.items()):
            left, right = saturation(values)
            kind = name.rpartition(".")[2]
            ax.scatter(left, right, s=8, alpha=0.6, label={"i": "input", "f": "forget", "o": "output"}[kind])
            rows.append([name, f"{left.mean():.1%}", f"{right.mean():.1%}",
                         f"{(right > 0.5).mean():.1%}", f"{(left > 0.5).mean():.1%}"])
        ax.plot([0, 1], [1, 0], color="#999", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{layer}: saturation per unit",
               xlabel=f"fraction of time below {SATURATED}", ylabel=f"fraction of time above {1 - SATURATED}")
        ax.legend(fontsize=8)
        forget = [values for name, values in gates.items() if name.endswith(".f")]
        if forget:
            axes[1, j].hist(forget[0].ravel(), bins=50, color="C1")
            axes[1, j].set(title=f"{layer}: forget gate values", xlabel="forget gate", ylabel="count")
    fig.tight_layout()
    return _section("gates", "Gates",
                    _note("Per unit, the fraction of the passage each gate spends left-saturated (below "
                          f"{SATURATED}) and right-saturated (above {1 - SATURATED}), as in Karpathy et al. 2015; "
                          "a forget gate right-saturated most of the time keeps its cell for long."),
                    _table(["gate", "mean time left-saturated", "mean time right-saturated",
                            "units right-saturated > half the time", "units left-saturated > half the time"], rows),
                    _image(fig, "gate saturation"))


def _errors(text: str, codes: np.ndarray, bits: np.ndarray, train_codes: np.ndarray, vocab_size: int) -> str:
    which = classes(text)
    baselines = {f"{n}-gram": KneserNey(train_codes, n, vocab_size).bits(codes) for n in NGRAM_ORDERS}
    rows = []
    for k, name in enumerate(CLASSES):
        chosen = which == k
        if chosen.any():
            rows.append([name, f"{chosen.sum():,}", f"{bits[chosen].mean():.3f}",
                         *(f"{b[chosen].mean():.3f}" for b in baselines.values())])
    rows.append(["all", f"{len(bits):,}", f"{bits.mean():.3f}", *(f"{b.mean():.3f}" for b in baselines.values())])
    return _section("errors", "Where the errors are",
                    _note("Bits per character of the passage by the class of the character predicted: the model "
                          "against interpolated Kneser-Ney n-gram models (discount 0.75) fitted on the training "
                          "split. Where the model is far below the n-grams it learned more than the last few "
                          "letters."),
                    _table(["class", "characters", "model", *baselines], rows))


def _memory(run: RunDir, snap) -> str:
    curve = memory.stored(run, snap.step)
    if curve is None:
        return _section("memory", "Memory", _note(f"No memory curve measured for this checkpoint yet: "
                                                  f"`longmem memory {run.path}` measures it (about a minute), "
                                                  "and the next report shows it."))
    return _section("memory", "Memory", f'<pre>{html.escape(memory.table(curve))}</pre>',
                    _image(memory.draw({"": curve}), "memory curve"))


def _probe(run: RunDir, snap) -> str:
    if not probe.trained_on(run):
        return ""
    curve = probe.stored(run, snap.step)
    if curve is None:
        return _section("probe", "Probe", _note(f"No probe curve measured for this checkpoint yet: "
                                                f"`longmem probe {run.path}` measures it, and the next report "
                                                "shows it."))
    return _section("probe", "Probe: accuracy by distance", f'<pre>{html.escape(probe.table(curve))}</pre>',
                    _image(probe.draw({"": curve}), "probe accuracy by distance"))


def _tracks(run: RunDir) -> str:
    names = track.available(run.path / "tracks")
    if not names:
        return _section("tracks", "Tracked values", _note("This run tracked no values (`longmem train --track`)."))
    parts = []
    for name in names:
        s = track.load(run.path, name)
        if len(s.steps) == 0:
            continue
        values = s.values.reshape(len(s.steps), -1)
        shown = values[:, :8]
        label = name if values.shape[1] <= 8 else f"{name} (first 8 of {values.shape[1]} elements)"
        curve = plot.Curve(name if shown.shape[1] == 1 else "", s.steps, shown)
        parts.append(_image(plot.draw([plot.Panel(label, "value", [curve])], size=(6, 3)), name))
    return _section("tracks", "Tracked values", *parts)


def _graph(snap) -> str:
    try:
        drawn = graph.svg(graph.flow_chart(snap)).decode()
    except UserError as e:
        return _section("graph", "The computation", _note(f"No flow chart: {e}"))
    return _section("graph", "The computation", drawn[drawn.index("<svg") :])
