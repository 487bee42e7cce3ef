import dataclasses
import http.server
import io
import json
import platform
import threading
import zipfile

import numpy as np
import pytest
from conftest import SHARED_BOOK

from helpers import TINY, run_cli
from longmem import corpus
from longmem.errors import UserError

HEADER = ("The Project Gutenberg eBook of Adventures of Huckleberry Finn\r\n\r\n"
          "*** START OF THE PROJECT GUTENBERG EBOOK 76 ***\r\n")
FOOTER = "\r\n*** END OF THE PROJECT GUTENBERG EBOOK 76 ***\r\nLicence text that is not the book.\r\n"


def test_file_round_trip_and_vocab(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("héllo wörld\nsecond line’s end\n", encoding="utf-8")
    c = corpus.load("python-docs", str(path))
    assert c.vocab.chars == "".join(sorted(set(path.read_text())))
    assert c.codes.dtype == np.uint8
    assert c.vocab.decode(c.codes) == path.read_text()


def test_multibyte_characters_split_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK", 3)
    text = "a’b’c’dé\r\nend"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode())
    c = corpus.load("python-docs", str(path))
    assert c.vocab.decode(c.codes) == text.replace("\r\n", "\n")


@pytest.mark.parametrize("chunk", [4, 5, 6])
def test_crlf_split_across_chunks_is_one_newline(tmp_path, monkeypatch, chunk):
    """The "\r" ends one chunk and the "\n" starts the next (chunk 5: "abcd\r" | "\nef")."""
    monkeypatch.setattr(corpus, "CHUNK", chunk)
    path = tmp_path / "t.txt"
    path.write_bytes(b"abcd\r\nef\r\ngh\r")
    c = corpus.load("python-docs", str(path))
    assert c.vocab.decode(c.codes) == "abcd\nef\ngh\r"
    assert c.vocab.chars == "\n\rabcdefgh"
    path.write_bytes(b"abcd\r\nefgh\r\n")
    c = corpus.load("python-docs", str(path))
    assert "\r" not in c.vocab.chars and c.vocab.decode(c.codes) == "abcd\nefgh\n"


def test_large_vocabulary_uses_wider_codes():
    text = "".join(chr(0x4E00 + i) for i in range(300))
    v = corpus.build_vocab(corpus.string_chunks(text))
    assert len(v) == 300 and v.dtype == np.uint16
    assert v.decode(v.encode(text)) == text


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such file"), (b"", "empty"), (b"abc\xff\xfedef", "not UTF-8 text .invalid byte at offset 3"),
     (b"abc\xe2\x80", "not UTF-8")],
)
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message) as e:
        corpus.load("python-docs", str(path))
    assert "\n" not in str(e.value)


def test_characters_outside_vocab_are_listed():
    v = corpus.Vocab(" abc")
    with pytest.raises(UserError, match=r"outside the vocabulary: '!z'"):
        v.encode("a b z!", "the priming text")


def test_python_docs_is_built_in():
    c = corpus.load("python-docs", None)
    assert len(c.codes) > 400_000 and len(c.vocab) < 256


def test_split_is_by_position():
    bounds = corpus.split(1000, 0.05, 0.1)
    assert bounds == {"train": [0, 850], "test": [850, 950], "val": [950, 1000]}
    with pytest.raises(UserError):
        corpus.split(1000, 0.6, 0.5)


def test_strip_gutenberg_keeps_only_the_book():
    stripped = corpus.strip_gutenberg(HEADER + "CHAPTER I.\r\n\r\nYou don't know\r\n" + FOOTER)
    assert stripped == "CHAPTER I.\n\nYou don't know\n"


@pytest.fixture
def book_server(monkeypatch):
    """A local HTTP server with the book wrapped in Gutenberg's header and footer."""
    book = SHARED_BOOK.read_text() if SHARED_BOOK.exists() else "CHAPTER I.\n\nYOU don't know about me.\n" * 50
    body = (HEADER + book.replace("\n", "\r\n") + FOOTER).encode()
    hits, server = _serve(monkeypatch, corpus.URL_ENV, body, "pg76.txt")
    yield book, hits, server
    server.shutdown()


def test_huck_finn_downloads_once_then_uses_the_cache(cache, book_server):
    book, hits, server = book_server
    first = corpus.load("huck-finn", None)
    assert len(hits) == 1
    assert first.vocab.decode(first.codes) == book.strip("\n") + "\n"
    assert (cache / "huck-finn.txt.sha256").read_text().strip() == corpus.sha256((cache / "huck-finn.txt").read_bytes())
    server.shutdown()  # offline from now on: the cache must serve
    again = corpus.load("huck-finn", None)
    assert len(hits) == 1
    np.testing.assert_array_equal(again.codes, first.codes)


def test_huck_finn_damaged_cache_is_downloaded_again(cache, book_server):
    book, hits, _ = book_server
    corpus.load("huck-finn", None)
    (cache / "huck-finn.txt").write_text("damaged")
    assert corpus.load("huck-finn", None).vocab.decode(corpus.load("huck-finn", None).codes) != "damaged"
    assert len(hits) == 2


def test_huck_finn_offline_without_cache_names_the_alternatives(cache, monkeypatch):
    monkeypatch.setenv(corpus.URL_ENV, "http://127.0.0.1:9/pg76.txt")  # nothing listens on port 9
    with pytest.raises(UserError, match="--text PATH.*python-docs"):
        corpus.load("huck-finn", None)
    assert not (cache / "huck-finn.txt").exists()


def _fake_stdlib(root):
    """A standard library folder with what the corpus takes and what it leaves out."""
    code = "def f(x):\n    return [x * i for i in range(10)]  # a comment\n" * 20
    for name in ("a.py", "b/c.py", "b_d.py", "test/t.py", "site-packages/s.py", "b/tests/u.py",
                 "idlelib/idle_test/q.py", "_sysconfigdata__linux.py", "config-3.11-x86_64/m.py", "README.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n{code}")
    return root


def test_python_stdlib_takes_the_library_source_in_path_order(tmp_path):
    root = _fake_stdlib(tmp_path / "lib")
    assert [p.relative_to(root).as_posix() for p in corpus.stdlib_files(root)] == ["a.py", "b/c.py", "b_d.py"]


def test_python_stdlib_is_built_once_into_the_cache(cache, tmp_path, monkeypatch):
    root = _fake_stdlib(tmp_path / "lib")
    monkeypatch.setattr(corpus, "stdlib_root", lambda: root)
    path = corpus.python_stdlib_path()
    expected = "".join((root / n).read_text() + "\n" for n in ("a.py", "b/c.py", "b_d.py"))
    assert path.read_text() == expected and path.parent == cache
    assert (cache / f"{path.name}.sha256").read_text().strip() == corpus.sha256(path.read_bytes())
    files = corpus.stdlib_files
    monkeypatch.setattr(corpus, "stdlib_files", lambda root: pytest.fail("built again"))
    assert corpus.python_stdlib_path() == path
    path.write_text("damaged")
    monkeypatch.setattr(corpus, "stdlib_files", files)  # (not undo(): that would undo the cache fixture too)
    assert corpus.python_stdlib_path().read_text() == expected  # a damaged cache is built again


def test_a_python_stdlib_run_names_its_python_and_refuses_another(cache, tmp_path, monkeypatch, capsys):
    from longmem import rundir

    monkeypatch.setattr(corpus, "stdlib_root", lambda: _fake_stdlib(tmp_path / "lib"))
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--corpus", "python-stdlib", "--run-dir", run, *TINY, "--steps", 2)
    assert code == 0, err
    source = json.loads((run / "config.json").read_text())["source"]
    assert source["python"] == platform.python_version() and len(source["sha256"]) == 64
    monkeypatch.setattr(rundir.platform, "python_version", lambda: "3.99.0")
    for command in (["eval", run], ["train", "--resume", run]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1 and err.count("\n") == 1
        assert f"trained on the standard library of Python {source['python']}; this is Python 3.99.0" in err


def _serve(monkeypatch, env: str, body: bytes, name: str = "enwik8.zip"):
    """A local HTTP server giving `body` at the address in `env`; returns its list of hits."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(env, f"http://127.0.0.1:{server.server_port}/{name}")
    return hits, server


def _small_benchmark(monkeypatch, name="enwik8"):
    """A small file in the benchmark's place: raw bytes (UTF-8 markup with accents), its zip
    archive, and the benchmark's expected sizes and digests pointed at them."""
    raw = ("<page><title>Café</title><text>[[Zürich]] is a city. ''x'' &amp; y</text></page>\n" * 60).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, raw)
    archive = buffer.getvalue()
    spec = dataclasses.replace(corpus.BENCHMARKS[name], zip_size=len(archive), zip_sha256=corpus.sha256(archive),
                               size=len(raw), sha256=corpus.sha256(raw))
    monkeypatch.setitem(corpus.BENCHMARKS, name, spec)
    return raw, archive, spec


def test_enwik8_downloads_once_checked_and_is_read_as_bytes(cache, monkeypatch, capsys, tmp_path):
    raw, archive, spec = _small_benchmark(monkeypatch)
    hits, server = _serve(monkeypatch, spec.url_env, archive)
    c = corpus.load("enwik8", None)
    assert len(hits) == 1 and sorted(p.name for p in cache.iterdir()) == ["enwik8", "enwik8.sha256"]
    assert len(c.vocab) == len(set(raw)) and len(c.codes) == len(raw)  # a symbol per byte value: é is two
    assert c.vocab.decode(c.codes).encode("latin-1") == raw and c.source["unit"] == "byte"
    n = len(raw)
    assert c.bounds(0.05, 0.05) == {"train": [0, n - 2 * round(n * 0.05)], "val": [n - 2 * round(n * 0.05),
                                    n - round(n * 0.05)], "test": [n - round(n * 0.05), n]}
    with pytest.raises(UserError, match="--val-fraction and --test-fraction do not apply"):
        c.bounds(0.1, 0.05)
    server.shutdown()  # offline from now on: the cache serves
    np.testing.assert_array_equal(corpus.load("enwik8", None).codes, c.codes)
    code, _, err = run_cli(capsys, "train", "--corpus", "enwik8", "--run-dir", tmp_path / "run", *TINY, "--steps", 5)
    assert code == 0, err
    code, out, _ = run_cli(capsys, "inspect", tmp_path / "run")
    assert f"enwik8, {len(set(raw))} symbols: bytes" in out


@pytest.mark.parametrize("damage, message", [
    (lambda archive: archive[:-100], "bytes, not the"),
    (lambda archive: archive[:40] + bytes(len(archive) - 40), "SHA-256 differs"),
])
def test_a_bad_benchmark_download_is_one_line_and_caches_nothing(cache, monkeypatch, damage, message):
    _, archive, spec = _small_benchmark(monkeypatch, "text8")
    _serve(monkeypatch, spec.url_env, damage(archive), "text8.zip")
    with pytest.raises(UserError, match=message):
        corpus.load("text8", None)
    assert not [p for p in cache.iterdir() if p.is_file()]


def test_a_damaged_benchmark_archive_or_no_network_caches_nothing(cache, monkeypatch):
    not_a_zip = b"PK not really an archive" * 10
    spec = dataclasses.replace(corpus.BENCHMARKS["text8"], zip_size=len(not_a_zip), zip_sha256=corpus.sha256(not_a_zip))
    monkeypatch.setitem(corpus.BENCHMARKS, "text8", spec)
    _serve(monkeypatch, spec.url_env, not_a_zip, "text8.zip")
    with pytest.raises(UserError, match="archive from .* is damaged"):
        corpus.load("text8", None)
    monkeypatch.setenv(spec.url_env, "http://127.0.0.1:9/text8.zip")  # nothing listens on port 9
    with pytest.raises(UserError, match="cannot download text8 .*LONGMEM_TEXT8_URL"):
        corpus.load("text8", None)
    assert not [p for p in cache.iterdir() if p.is_file()]
