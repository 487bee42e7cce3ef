"""What every model in `nets/` offers; nothing outside `nets/` looks behind it.

A model module has:

    init_params(cfg, vocab_size, rng) -> dict[str, ndarray]
        its parameters, plain NumPy, dotted names (`lstm.0.Wh`)
    init_state(cfg, batch) -> dict[str, ndarray]
        the recurrent state a stream starts from, any number of named arrays
        whose second axis is the stream (checkpointed as `state/NAME`)
    noise(cfg, T, B) -> dict[str, (shape, option)]
        the dropout masks a training window needs, each with the ModelConfig
        field that is its probability p (dropout, weight_drop); the compiled
        step draws them (from the seed, the step's number and p, an input of
        the step, see dropout.py) and passes multipliers (0, or 1 / (1 - p))
        to `forward`
    schedule(cfg, step) -> dict[str, float]
        values that change with the training step (hmlstm's slope); the loop
        passes them to `forward` as symbolic scalars (none: plain defaults)
    forward(params, x, state, masks=None, schedule=None) -> Forward
        over a window x (T, B) of codes
    target(x, y) -> (T, B)
        what the model learns to output at each position, from the window's
        inputs x and the text's next characters y (for a language model, y)
    loss(fw, target) -> scalar
        the loss it trains on (the sum of `Forward.losses` is added to it)
    log_probs(logits, target) -> (T, B)
        log p of the targets, for evaluation in bits per character
    BITS: bool
        whether that loss is a cross-entropy in nats (metrics then show it in
        bits per character too)
    BASE: bool (optional, default False)
        built on a finished run: `init_params` then also takes `base`, that
        run's parameters (launch loads them from --base and checks its text)
    EXPLODES: float | None
        stop a run whose loss exceeds this many times its first loss (None:
        only a NaN or infinite value stops it, for losses that start near 0)
    diagram(cfg) -> Diagram
        the computation as a reader thinks of it, for `longmem graph`: from
        the node "x" (the window's characters) and "state" (carried in) to
        "logits" and "next state"; the loss and the optimizer are added
        around it
    EMBEDDINGS: tuple[str, ...]
        the parameters `forward` indexes by the window's codes (`P[x]`, an
        embedding lookup) and reads in no other way: the gradient of a
        prediction with respect to each input (`longmem memory --influence`)
        is taken with respect to those rows
    describe(cfg) -> str
        its size in words, for the report's summary ("2 x 256 cells")
    activations(cfg, T) -> int (optional)
        about how many values training keeps of each position of a window of T,
        per stream, for the gradient (launch refuses a model that would not fit
        in memory; default: ten per unit of the state, right for the LSTMs)
    LR: float (optional, default config.LR)
        the learning rate it trains at when --lr is not given (measured per
        model: docs/memory.md)
    OPTIONS: set[str] (optional, default none)
        the model options it reads among the ModelConfig fields marked
        `per_net` (--weight-drop): the others are off for it, and refused
        when given

What several nets share (the language model's target and loss, initialisers,
the LSTM's gates) is in parts.py.

Internals are named `<part>.<value>`, the part dotted like the parameters
(`lstm.0`, `hm.1`, `stage2`) and the value's name last. Where a part is an
LSTM, the values are `h` (output), `c` (cell) and the gates `i`, `f`, `o`,
`g` (input, forget, output, candidate), each (T, B, cells): the report reads
cells from `.c` and gates from `.i .f .o`, whatever the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Forward:
    logits: object  # (T, B, V)
    state: dict  # the state after the window, named as init_state names it
    internals: dict  # named values at full resolution, (T, B, ...)
    losses: dict  # extra loss terms (scalars) the model trains on, by name


@dataclass
class Diagram:
    """Boxes and arrows: nodes by id (label, kind), edges (from, to, label, style:
    "" for data, "fixed" for a value passed on without gradient, "recurrent" for
    a value from the previous step), and groups of nodes drawn together."""

    nodes: dict = field(default_factory=dict)  # id -> (label, kind: "data", "op", "loss")
    edges: list = field(default_factory=list)
    groups: dict = field(default_factory=dict)  # id -> (title, [node ids])

    def node(self, id: str, label: str, kind: str = "op", group: str | None = None) -> str:
        self.nodes[id] = (label, kind)
        if group:
            self.groups[group][1].append(id)
        return id

    def edge(self, a: str, b: str, label: str = "", style: str = "") -> None:
        self.edges.append((a, b, label, style))

    def lstm(self, id: str, title: str, cells: int, reads: list[tuple], note: str = "") -> str:
        """An LSTM layer of `cells` reading inputs (node, label[, style]); returns its h node."""
        self.groups[id] = (f"{title}: {cells} cells" + (f", {note}" if note else ""), [])
        gates = self.node(f"{id}.gates", "gates i, f, o = sigmoid(.)\ncandidate g = tanh(.)", group=id)
        c = self.node(f"{id}.c", "c = f * c(t-1) + i * g", group=id)
        h = self.node(f"{id}.h", "h = o * tanh(c)", group=id)
        for source, label, *style in reads:
            self.edge(source, gates, label, *style)
        self.edge(gates, c)
        self.edge(c, h)
        self.edge(h, gates, "h(t-1)", "recurrent")
        self.edge("state", gates, f"{id} h, c")
        self.edge(h, "next state", f"{id} h, c")
        return h

    def to_logits(self, source: str, dropout: float | None, label: str) -> None:
        """The softmax layer reading `source`, through dropout when there is any."""
        if dropout != 0:
            dropped = self.node(f"{source}.dropout", f"dropout {probability(dropout)}")
            self.edge(source, dropped)
            source = dropped
        self.edge(source, "logits", label)


def probability(p: float | None) -> str:
    """A drop probability as a diagram shows it (None: chosen by the run, see dropout.AUTO)."""
    return "auto" if p is None else f"{p:g}"
