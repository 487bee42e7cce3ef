"""`longmem report`: the analyses on known answers, and the page end to end."""

import math
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import write_small_text

from helpers import TINY, digest, run_cli
from longmem import engine
from longmem.config import ModelConfig
from longmem.corpus import Vocab
from longmem.nets import lstm
from longmem.predict import Predictor
from longmem.study import report
from longmem.study.ngram import KneserNey

SECTIONS = ["summary", "surprise", "cells", "gates", "errors", "memory", "tracks", "graph"]


def test_properties_of_a_text():
    p = report.properties('a “b c” (d)\n_e_ f.')
    assert p["inside quotes"].tolist() == [0, 0, 1, 1, 1, 1] + [0] * 12
    assert p["inside parentheses"].tolist()[8:12] == [1, 1, 0, 0]
    assert p["inside _italics_"].tolist()[12:16] == [1, 1, 0, 0]
    assert p["position in the line"].tolist()[9:14] == [10, 11, 0, 1, 2]
    assert p["position in the word"].tolist()[:6] == [1, 0, 0, 1, 0, 1]
    assert p["characters since the sentence began"].tolist()[-3:] == [16, 17, 0]


def test_correlations_and_saturation_match_their_definitions(rng):
    values = rng.normal(size=(50, 4))
    prop = rng.normal(size=50)
    expected = [np.corrcoef(values[:, u], prop)[0, 1] for u in range(4)]
    np.testing.assert_allclose(report.correlations(values, prop), expected)
    assert report.correlations(np.ones((5, 2)), np.arange(5.0)).tolist() == [0, 0]
    gate = np.array([[0.05, 0.5], [0.95, 0.5], [0.02, 0.99], [0.5, 0.5]])
    left, right = report.saturation(gate)
    assert left.tolist() == [0.5, 0] and right.tolist() == [0.25, 0.25]


def test_a_hand_set_cell_that_counts_the_line_is_found(rng):
    """Cell 0 of a one-layer LSTM is set to add 1 per character and forget at a newline:
    its c tracks the position in the line, and the search finds exactly it."""
    vocab = Vocab("\n abc")
    H, V = 3, len(vocab)
    params = lstm.init_params(ModelConfig(hidden=H, init_scale=0.1), V, rng)
    b = params["lstm.0.b"]
    b[0], b[H], b[2 * H], b[3 * H] = 12.0, 12.0, 12.0, 12.0  # cell 0: i, f, o open, candidate +1
    params["lstm.0.Wx"][:, [0, H, 2 * H, 3 * H]] = 0.0
    params["lstm.0.Wh"][:, [0, H, 2 * H, 3 * H]] = 0.0
    params["lstm.0.Wx"][vocab.chars.index("\n"), H] = -40.0  # ... and its forget gate shuts at a newline
    cfg = ModelConfig(hidden=H)
    text = "\n" + "".join("".join(rng.choice(list("abc "), rng.integers(5, 40))) + "\n" for _ in range(12))
    _, internals = Predictor(engine.share_all(params), cfg, "JAX").internals(vocab.encode(text), 16)
    c = internals["lstm.0.c"]
    props = report.properties(text)
    np.testing.assert_allclose(c[:, 0], props["position in the line"] + 1, rtol=1e-3)
    best = report.best_cells({"lstm.0.c": c, "lstm.0.h": internals["lstm.0.h"]}, props)
    cell = best["position in the line"]
    assert (cell.name, cell.unit) == ("lstm.0.c", 0) and cell.r > 0.999
    assert report.widest_cells({"lstm.0.c": c})[0].unit == 0


def test_character_classes():
    classes = [report.CLASSES[k] for k in report.classes("a Bc,\n1de")]
    assert classes == ["space", "capital letter", "letter inside a word", "punctuation and other", "newline",
                       "digit", "letter starting a word", "letter inside a word"]


def test_kneser_ney_is_a_distribution_and_learns(rng):
    codes = np.array([0, 1, 2, 3] * 50 + list(rng.integers(0, 5, 100)))
    for order in (1, 3, 5):
        model = KneserNey(codes, order, 6)
        for context in ([], [0], [1, 2], [4, 4, 4, 4]):
            ctx = "".join(map(chr, context))
            assert sum(model.probability(ctx, chr(w)) for w in range(6)) == pytest.approx(1.0)
        assert model.probability("", chr(5)) > 0  # never seen, still possible
    bits = KneserNey(codes, 3, 6).bits(np.array([0, 1, 2, 3, 0, 1, 2, 3]))
    assert len(bits) == 7 and bits[2:].max() < 0.5  # the cycle is learned
    assert KneserNey(codes, 1, 6).bits(np.array([0, 1]))[0] == pytest.approx(
        -math.log2(KneserNey(codes, 1, 6).probability("", chr(1))))


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A tiny run with a tracked value, and its report (built once for the tests below)."""
    from longmem.cli import main

    folder = tmp_path_factory.mktemp("reported")
    run_dir = folder / "run"
    flags = ["--text", write_small_text(folder), "--run-dir", run_dir, "--steps", 20, "--track", "out.b", *TINY]
    assert main(["train", *map(str, flags)]) == 0
    assert main(["report", str(run_dir), "--chars", "300"]) == 0
    return run_dir


def test_report_end_to_end(reported, tmp_path, capsys):
    run_dir = reported
    page = (run_dir / "report.html").read_text()
    code, out, err = run_cli(capsys, "report", run_dir, "--chars", 300, "-o", tmp_path / "same.html")
    assert code == 0 and out.strip() == str(tmp_path / "same.html"), err
    assert [s for s in SECTIONS if f'<section id="{s}">' in page] == SECTIONS
    assert not re.search(r'(src|href)="https?:|url\(', page) and "<script" not in page  # nothing from the network
    assert page.count("data:image/png;base64,") >= 4  # learning curves, gates, tracked out.b, ...
    assert len(re.findall(r'<span style="background:rgba\(214,39,40,[0-9.]+\)" title="', page)) == 300
    # From the 129th character on, the three earlier ones its prediction leaned on most, with their lags.
    leaned = re.findall(r'; leaned on: ([^"]*)"', page)
    assert len(leaned) == 300 - 128 + 1 and all(len(re.findall(r" (\d+) back \(\d+%\)", t)) == 3 for t in leaned)
    assert all(1 <= int(k) <= 128 for t in leaned for k in re.findall(r" (\d+) back", t))
    assert "longmem memory" in page  # not measured yet: says how
    assert run_cli(capsys, "memory", run_dir, "--positions", 20, "--max-context", 8)[0] == 0
    assert run_cli(capsys, "report", run_dir, "--chars", 100, "-o", tmp_path / "again.html")[0] == 0
    memory = re.search(r'<section id="memory">(.*?)</section>', (tmp_path / "again.html").read_text(), re.S)
    assert "<img" in memory.group(1) and "longmem memory" not in memory.group(1)
    assert "<tr><td>parameters of step</td><td>20</td></tr>" in page
    best = digest(capsys, run_dir)["best_step"]
    made = run_cli(capsys, "report", run_dir, "--chars", 50, "--checkpoint", "best", "-o", tmp_path / "best.html")
    assert made[0] == 0
    assert f"<tr><td>parameters of step</td><td>{best}</td></tr>" in (tmp_path / "best.html").read_text()


def test_report_refuses_what_it_cannot_read(tmp_path, small_text, capsys):
    code, _, err = run_cli(capsys, "report", tmp_path / "nothing")
    assert code == 1 and err.count("\n") == 1
    caesar = tmp_path / "caesar"
    assert run_cli(capsys, "caesar", "--run-dir", caesar, "--passes", 1, "--letters", 200)[0] == 0
    code, _, err = run_cli(capsys, "report", caesar)
    assert code == 1 and "a report reads models of text" in err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--enable-logging=stderr"]


@pytest.mark.skipif(not CHROMIUM, reason="no chromium here (.ci/run installs Debian's when it can)")
def test_the_page_renders_in_a_real_browser(reported, tmp_path):
    """Debian's Chromium, headless, opens the page from a file: every section is in the
    rendered document, nothing is logged to the console, and a screenshot is taken."""
    page = (reported / "report.html").as_uri()

    def chromium(*flags):
        done = subprocess.run([CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}", *flags, page],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done

    dom = chromium("--dump-dom")
    assert [s for s in SECTIONS if f'<section id="{s}">' in dom.stdout] == SECTIONS
    shot = tmp_path / "shot.png"
    logged = chromium("--window-size=1200,1600", f"--screenshot={shot}").stderr + dom.stderr
    assert "CONSOLE" not in logged, logged
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
