"""`longmem graph`: every model's flow chart is whole, and the command draws it."""

import shutil

import pytest
from conftest import write_small_text

from helpers import TINY, run_cli
from longmem.config import ModelConfig
from longmem.nets import NETS

COMMON = {"x", "state", "next state", "logits"}
DOT = shutil.which("dot")


@pytest.mark.parametrize("model, sizes", [("lstm", dict(layers=2)), ("hmlstm", dict(layers=3)), ("model1", {}),
                                          ("model2", {}), ("caesar", {}), ("mingru", dict(layers=2)),
                                          ("minlstm", {}), ("transformer", dict(heads=2, context=4)),
                                          ("mlstm", dict(heads=2)), ("slstm", dict(heads=2))])
def test_every_arrow_joins_two_boxes(model, sizes):
    cfg = ModelConfig(model=model, hidden=8, **sizes)
    d = NETS[model].diagram(cfg)
    known = COMMON | set(d.nodes)
    assert all(a in known and b in known for a, b, _, _ in d.edges), d.edges
    assert any(b == "logits" for _, b, _, _ in d.edges) and any(a == "x" for a, _, _, _ in d.edges)
    assert all(node in d.nodes for _, members in d.groups.values() for node in members)
    drawn = {a for a, _, _, _ in d.edges} | {b for _, b, _, _ in d.edges}
    assert set(d.nodes) <= drawn, set(d.nodes) - drawn  # no box left unconnected


def test_the_stop_gradients_are_drawn_where_the_model_has_them():
    fixed = lambda model: {(a, b) for a, b, _, style in NETS[model].diagram(ModelConfig(model=model)).edges  # noqa: E731
                           if style == "fixed"}
    assert fixed("model2") == {("a.c", "dc"), ("u", "a.gates")}
    assert fixed("model1") == {("stage1.c", "delta"), ("prediction", "stage3.gates")}
    assert fixed("lstm") == set()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from longmem.cli import main

    folder = tmp_path_factory.mktemp("graph")
    assert main(["train", "--text", str(write_small_text(folder)), "--run-dir", str(folder / "run"), "--steps", "2",
                 *TINY, "--dropout", "0.3", "--weight-drop", "0.3"]) == 0
    return folder / "run"


@pytest.mark.skipif(not DOT, reason="Graphviz's dot is not installed (.ci/run installs it when it can)")
def test_graph_draws_the_flow_chart_and_the_compiled_step(run_dir, tmp_path, capsys):
    (run_dir / "graph.svg").unlink(missing_ok=True)
    code, out, err = run_cli(capsys, "graph", run_dir)
    assert code == 0, err
    svg = (run_dir / "graph.svg").read_text()
    assert out.strip() == str(run_dir / "graph.svg") and svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for text in ("layer 0: 16 cells, DropConnect 0.3 on Wh", "dropout 0.3", "rmsprop",
                 "cross-entropy with the next character"):
        assert text in svg.replace("&#45;", "-"), text
    code, _, err = run_cli(capsys, "graph", run_dir, "--full", "-o", tmp_path / "full.svg")
    assert code == 0, err
    full = (tmp_path / "full.svg").read_text()
    assert full.count('class="node"') > 30  # every compiled operation, not the summary


def test_graph_without_dot_is_one_clear_line(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    code, _, err = run_cli(capsys, "graph", run_dir, "-o", tmp_path / "g.svg")
    assert code == 1 and "needs Graphviz's `dot` program" in err and err.count("\n") == 1
    assert not (tmp_path / "g.svg").exists()
