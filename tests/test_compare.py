"""`longmem compare` end to end on two tiny runs."""

import json

import pytest

from helpers import TINY, digest, run_cli
from longmem.study import compare


@pytest.fixture
def two_runs(tmp_path, small_text, capsys):
    runs = []
    for name, extra in (("rms", []), ("adam", ["--optimizer", "adam", "--hidden", 8])):
        run_dir = tmp_path / name
        code, _, err = run_cli(capsys, "train", "--text", small_text, "--run-dir", run_dir, "--steps", 20,
                               *TINY, *extra)
        assert code == 0, err
        runs.append(run_dir)
    return runs


def test_compare_writes_the_table_and_figures_and_stores_what_it_computed(two_runs, tmp_path, capsys):
    out = tmp_path / "side-by-side"
    argv = ["compare", *two_runs, "--out", out, "--positions", 50, "--max-context", 64]
    code, printed, err = run_cli(capsys, *argv)
    assert code == 0, err
    names = {"compare.md", "compare.json", "bpc-vs-time.png", "bpc-vs-chars.png", "memory.png"}
    assert {p.name for p in out.iterdir()} == names
    rows = json.loads((out / "compare.json").read_text())["runs"]
    assert [r["run"] for r in rows] == ["rms", "adam"]
    for r, run_dir in zip(rows, two_runs):
        code, evaluated, _ = run_cli(capsys, "eval", run_dir, "--json")
        assert r["bpc"] == pytest.approx(json.loads(evaluated)["bpc"])
        code, measured, _ = run_cli(capsys, "memory", run_dir, "--positions", 50, "--max-context", 64, "--json")
        assert r["memory_length"] == json.loads(measured)["memory_length"]
        assert r["steps"] == 20 and r["chars_seen"] == 20 * 4 * 8 and r["chars_per_s"] > 0
        validation = [m for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                      if "val_bpc" in m]
        best = min(validation, key=lambda m: m["val_bpc"])
        assert len(validation) == 2 and r["best_val_bpc"] == best["val_bpc"]
        assert r["best_val_minutes"] == pytest.approx(best["elapsed"] / 60)
    assert rows[1]["params"] < rows[0]["params"]
    assert "| rms | lstm |" in printed and "held-out bpc" in (out / "compare.md").read_text()
    # A second comparison reads the stored evaluations and curves instead of computing them again.
    stored = {p: p.stat().st_mtime_ns for run in two_runs for p in run.glob("*/step*.json")}
    assert len(stored) == 4
    assert run_cli(capsys, *argv)[0] == 0
    assert {p: p.stat().st_mtime_ns for run in two_runs for p in run.glob("*/step*.json")} == stored
    assert [r["params_step"] for r in rows] == [20, 20]
    # With --checkpoint best, each run is scored with the parameters of its best evaluation.
    code, _, err = run_cli(capsys, *argv[:3], "--out", tmp_path / "best", "--positions", 50, "--max-context", 64,
                           "--checkpoint", "best")
    assert code == 0, err
    for r, run_dir in zip(json.loads((tmp_path / "best" / "compare.json").read_text())["runs"], two_runs):
        evaluated = json.loads(run_cli(capsys, "eval", run_dir, "--json", "--checkpoint", "best")[1])
        assert r["params_step"] == evaluated["step"] == digest(capsys, run_dir)["best_step"]
        assert r["bpc"] == pytest.approx(evaluated["bpc"])


def test_compare_refuses_unclear_labels(two_runs, tmp_path, capsys):
    code, _, err = run_cli(capsys, "compare", *two_runs, "--out", tmp_path / "o", "--names", "one")
    assert code == 1 and "--names gives 1 labels for 2 runs" in err


def test_the_table_says_when_a_memory_length_is_lost_starts():
    blank = {key: None for key, _, _ in compare.COLUMNS} | {"run": "r", "max_context": 1024}
    lost = compare.markdown([blank | {"lost": 0.12}, blank | {"lost": 0.0, "memory_length": 64}, blank])
    assert "| > 1024 (lost starts 12%) |" in lost and "| 64 |" in lost and "| > 1024 |" in lost
