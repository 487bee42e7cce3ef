"""Probes: the episodes against hand-worked examples, the endless streams, and a tiny
model the instrument tells apart at a distance it learned and one it did not."""

import json

import numpy as np
import pytest

from helpers import KILL_FLAGS, TINY, killed_equals_whole, run_cli
from longmem import corpus, probes
from longmem.batches import Cursor
from longmem.errors import UserError


def _told(episode):
    """Every scored character equals the one its lag points back to."""
    return all(episode.text[p] == episode.text[p - lag] for p, lag in zip(episode.scored, episode.lags))


def test_copy_is_the_symbols_fill_a_marker_and_the_symbols_again():
    p = probes.probe("copy", "6:6", 3, 4)
    e = p.episode(np.random.default_rng(0), 6)
    data = e.text[:3]
    assert set(data) <= set("abcd") and e.text == data + ".." + ":" + data + "\n"
    assert list(e.scored) == [6, 7, 8] and list(e.lags) == [6, 6, 6] and _told(e)
    assert len(e.text) == p.episode_length(6) and p.alphabet == "\n.:abcd"


def test_selective_copy_scatters_the_symbols_and_asks_for_them_in_order():
    p = probes.probe("selective-copy", "10:10", 3, 26)
    e = p.episode(np.random.default_rng(1), 10)
    region, rest = e.text[:10], e.text[10:]
    assert len(region.replace(".", "")) == 3 and rest == ":" + region.replace(".", "") + "\n"
    assert list(e.scored) == [11, 12, 13] and _told(e)
    assert list(e.lags) == [11 + i - region.index(c) for i, c in enumerate(region.replace(".", ""))]
    assert len(e.text) == p.episode_length(10)


def test_recall_asks_every_key_again_after_the_gap():
    p = probes.probe("recall", "9:9", 3, 10)
    e = p.episode(np.random.default_rng(2), 9)
    pairs, fill, queries = e.text[:6], e.text[6:8], e.text[9:15]
    assert fill == ".." and e.text[8] == ":" and e.text[15:] == "\n"
    assert dict(zip(pairs[::2], pairs[1::2])) == dict(zip(queries[::2], queries[1::2]))
    assert len(set(pairs[::2])) == 3 and set(pairs[1::2]) <= set("0123456789")
    assert list(e.scored) == [10, 12, 14] and _told(e)
    assert all(e.text[p - 1] == e.text[p - lag - 1] for p, lag in zip(e.scored, e.lags))  # the same key


@pytest.mark.parametrize("name", list(probes.EPISODES))
def test_every_scored_character_is_told_at_its_lag(name):
    p = probes.probe(name, "40:300", None, None)
    rng = np.random.default_rng(3)
    for _ in range(20):
        d = p.distance(rng)
        e = p.episode(rng, d)
        assert 40 <= d <= 300 and len(e.text) == p.episode_length(d) and _told(e)
        assert set(e.text) <= set(p.alphabet) and e.text.endswith("\n") and e.text.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (("copy", "8", 8, None), "needs distances of at least 9"),
    (("copy", "9:x", None, None), "give LO:HI"),
    (("copy", "20:10", None, None), "at most HI"),
    (("recall", None, 30, None), "1 to 26"),
    (("recall", None, None, 11), "1 to 10 data symbols"),
    (("sorting", None, None, None), "unknown probe"),
])
def test_bad_probe_settings_are_one_line(args, message):
    with pytest.raises(UserError, match=message):
        probes.probe(*args)


@pytest.mark.parametrize("name", list(probes.EPISODES))
def test_the_training_streams_are_fresh_and_the_same_again(name):
    """What a resumed run reads (the kill test below runs one probe through it)."""
    p = probes.probe(name, "10:40", 4, 4)
    vocab = corpus.Vocab(p.alphabet)
    streams = probes.ProbeStreams(p, 5, vocab.encode, 3, 16)
    assert streams.length == streams.windows * 16 >= 4 * p.episode_length(40)
    first = streams.at(Cursor(0, 2))
    again = probes.ProbeStreams(p, 5, vocab.encode, 3, 16).at(Cursor(0, 2))  # a resumed run's
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1][:-1], first[0][1:])  # targets are the next characters
    later = streams.at(Cursor(1, 2))
    assert not np.array_equal(first[0], later[0])  # another pass: new episodes
    assert not np.array_equal(first[0][:, 0], first[0][:, 1])  # streams differ
    assert vocab.decode(streams.xs[0]).count(":") >= 4  # whole episodes, from the start of the pass


def test_other_corpora_refuse_probe_flags_and_probes_have_fixed_parts(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--probe-distance", "8:16", "--run-dir", tmp_path / "r", *TINY)
    assert code == 1 and "--probe-distance goes with --corpus probe:NAME" in err
    c = corpus.for_run(corpus.DataConfig(corpus="probe:recall"), seed=3)
    assert c.bounds(0.05, 0.05) == {"train": [0, 65536], "test": [65536, 131072], "val": [131072, 196608]}
    again = corpus.for_run(corpus.DataConfig(corpus="probe:recall"), seed=3)
    np.testing.assert_array_equal(c.codes, again.codes)
    assert not np.array_equal(c.codes[65536:131072], c.codes[131072:])


COPY_AT_8 = ["--corpus", "probe:copy", "--probe-distance", "8:8", "--probe-length", "4", "--probe-symbols", "4"]


def test_a_tiny_model_copies_at_8_and_the_probe_tells_512_from_it(tmp_path, capsys):
    run = tmp_path / "copy"
    code, _, err = run_cli(capsys, "train", *COPY_AT_8, "--run-dir", run, "--hidden", 32, "--batch", 32,
                           "--seq", 32, "--steps", 1500, "--eval-every", 500, "--eval-chars", 5000, "--lr", 0.01,
                           "--dropout", 0, "--weight-drop", 0)
    assert code == 0, err
    code, out, err = run_cli(capsys, "probe", run, "--distances", 8, 512, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["accuracy"][0] >= 0.95 and found["reach"] == 8
    assert found["accuracy"][1] <= found["chance_accuracy"] + 0.1  # near chance: it never learned 512
    assert (run / "plots" / "probe.png").is_file() and list((run / "probe").glob("*.json"))
    code, out, _ = run_cli(capsys, "probe", run, "--distances", 8, 512)
    assert "probe reach 8 characters" in out and "beyond" in out
    code, _, err = run_cli(capsys, "probe", run, "--distances", 4)
    assert code == 1 and "needs distances of at least 5" in err
    code, _, err = run_cli(capsys, "compare", run, "--out", tmp_path / "cmp", "--positions", 50, "--max-context", 16)
    assert code == 0, err
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"][0]["probe_reach"] == "copy 8"


PROBE_FLAGS = ["--probe-distance", "20:40", "--probe-length", "3", *TINY, "--eval-chars", 500]


def test_a_probe_run_killed_and_resumed_equals_one_uninterrupted(capsys, tmp_path):
    """The endless streams are the same on resume, across the passes the kills land in (a
    pass is 23 steps here); the streams are the same code for every probe."""
    killed_equals_whole(capsys, tmp_path, "train", ["--corpus", "probe:recall", *PROBE_FLAGS, *KILL_FLAGS])
