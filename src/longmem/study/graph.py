"""`longmem graph`: the computation of a run as a flow chart (SVG, through Graphviz).

The flow chart is drawn from the model's own description (`diagram` in its
module in `nets/`: layers, gates, state carried between windows), with the
loss and the optimizer's updates around it. `--full` draws PyTensor's whole
compiled training step instead: every operation after graph rewriting, for
those who want to see exactly what runs.
"""

from __future__ import annotations

from longmem import engine
from longmem.errors import UserError
from longmem.nets import NETS
from longmem.rundir import load
from longmem.step import Trainer

SHAPES = {"data": dict(shape="ellipse", style="filled", fillcolor="#eef4fb"),
          "op": dict(shape="box", style="rounded"),
          "loss": dict(shape="box", style="rounded,filled", fillcolor="#fdeaea")}
EDGES = {"": {}, "fixed": dict(style="dashed", color="#888888"),
         "recurrent": dict(style="dotted", constraint="false", color="#3b6ea8")}


def flow_chart(snap):
    """The computation of a run's model (at the checkpoint `snap`, a rundir.Snapshot) at the
    level a reader thinks in, as a graphviz.Digraph."""
    graphviz = _graphviz()
    cfg, vocab_size = snap.config, len(snap.vocab)
    net = NETS[cfg.model.model]
    d = net.diagram(snap.model())
    t, o = cfg.train, cfg.optim
    dot = graphviz.Digraph("longmem", graph_attr=dict(rankdir="TB", fontname="Helvetica", fontsize="11",
                                                      label=f"{cfg.model.model}: one training step",
                                                      labelloc="t"),
                           node_attr=dict(fontname="Helvetica", fontsize="10"),
                           edge_attr=dict(fontname="Helvetica", fontsize="9"))
    used = {end for a, b, _, _ in d.edges for end in (a, b)}
    common = {"x": (f"characters x: {t.seq} steps x {t.batch} streams", "data"),
              "state": ("state carried in from the previous window", "data"),
              "next state": ("state carried on to the next window", "data"),
              "logits": (f"logits over {vocab_size} characters", "op")}
    nodes = {k: v for k, v in common.items() if k in used} | d.nodes
    grouped = {node for _, members in d.groups.values() for node in members}
    for node, (label, kind) in nodes.items():
        if node not in grouped:
            dot.node(_id(node), label, **SHAPES[kind])
    for group, (title, members) in d.groups.items():
        with dot.subgraph(name=f"cluster_{_id(group)}") as sub:
            sub.attr(label=title, style="rounded", color="#bbbbbb")
            for node in members:
                label, kind = nodes[node]
                sub.node(_id(node), label, **SHAPES[kind])
    for a, b, label, style in d.edges:
        note = " (no gradient)" if style == "fixed" else ""
        dot.edge(_id(a), _id(b), label + note, **EDGES[style])
    loss = "cross-entropy with the next character" if net.BITS else "squared error with the target"
    dot.node("loss", f"loss: {loss}", **SHAPES["loss"])
    dot.edge("logits", "loss")
    clip = f", gradient norm clipped to {o.clip:g}" if o.clip > 0 else ""
    dot.node("optimizer", f"{o.optimizer} (lr {o.lr:g}{clip})\nupdates every parameter", **SHAPES["op"])
    for node, (_, kind) in nodes.items():
        if kind == "loss":
            dot.edge(_id(node), "optimizer", "gradient")
    dot.edge("loss", "optimizer", "gradient")
    return dot


def full(step_fn, title: str):
    """Every operation of a compiled PyTensor function (e.g. the training step)."""
    graphviz = _graphviz()
    dot = graphviz.Digraph("pytensor", graph_attr=dict(label=title, labelloc="t", fontsize="11"),
                           node_attr=dict(fontname="Helvetica", fontsize="9", shape="box"),
                           edge_attr=dict(fontsize="8", fontname="Helvetica"))
    fgraph = step_fn.maker.fgraph
    names = {}
    for i, var in enumerate(fgraph.inputs):
        names[var] = f"in{i}"
        dot.node(names[var], var.name or str(var.type), **SHAPES["data"])
    for n, node in enumerate(fgraph.toposort()):
        dot.node(f"op{n}", str(node.op)[:80])
        for var in node.inputs:
            if var.owner is not None and var.owner in fgraph.apply_nodes:
                dot.edge(names[var.owner], f"op{n}")
            elif var in names:
                dot.edge(names[var], f"op{n}")
        names[node] = f"op{n}"
    for i, var in enumerate(fgraph.outputs):
        dot.node(f"out{i}", var.name or f"output {i}", **SHAPES["data"])
        if var.owner is not None:
            dot.edge(names[var.owner], f"out{i}")
    return dot


def svg(dot) -> bytes:
    """Lay out and draw with Graphviz's `dot` program."""
    graphviz = _graphviz()
    try:
        return dot.pipe(format="svg")
    except graphviz.ExecutableNotFound:
        raise UserError("drawing a graph needs Graphviz's `dot` program: install Graphviz "
                        "(e.g. apt-get install graphviz, brew install graphviz)") from None
    except graphviz.CalledProcessError as e:
        raise UserError(f"Graphviz's dot failed: {e.stderr.decode(errors='replace').strip()[:200]}") from None


def _graphviz():
    try:
        import graphviz
    except ImportError:
        raise UserError("drawing a graph needs the Python package graphviz: pip install graphviz") from None
    return graphviz


def _id(name: str) -> str:
    """A node id dot reads as one name."""
    return name.replace(".", "_").replace(" ", "_")


def of_run(run, compiled: bool = False, backend: str | None = None):
    """The flow chart of a run (a RunDir), or with `compiled` its whole compiled training
    step (compiled here, on one CPU device)."""
    snap = load(run)
    if not compiled:
        return flow_chart(snap)
    snap.config.train.device, snap.config.train.devices = "cpu", "1"
    trainer = Trainer(snap.config, snap.params, engine.configure(backend or snap.config.train.backend, "cpu"))
    return full(trainer.step_fn, f"{run.path.name}: the compiled training step")
