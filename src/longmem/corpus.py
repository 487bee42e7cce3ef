"""Texts to train on: built-in corpora, a cached download, any UTF-8 file.

A text becomes a compact integer array (one byte per character when the
vocabulary has at most 256 symbols), read in chunks so that a large file never
sits in memory as Python strings or one-hot rows.
"""

from __future__ import annotations

import codecs
import os
import platform
import string
import sys
import sysconfig
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from longmem import probes
from longmem.batches import Streams
from longmem.config import PROBE_PREFIX, DataConfig, check, check_fractions
from longmem.errors import UserError
from longmem.files import atomic_write, cache_dir, file_sha256, input_file, sha256

HUCK_FINN_URL = "https://www.gutenberg.org/cache/epub/76/pg76.txt"
URL_ENV = "LONGMEM_HUCK_FINN_URL"
CHUNK = 1 << 20  # characters (or bytes) handled at a time

Chunks = Callable[[], Iterator[str]]


@dataclass(frozen=True)
class Vocab:
    """The symbol table: character i of `chars` is code i."""

    chars: str  # sorted, each character once

    def __post_init__(self):
        if list(self.chars) != sorted(set(self.chars)):
            raise ValueError("a vocabulary's characters must be sorted and distinct")

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def dtype(self):
        return np.uint8 if len(self) <= 256 else np.uint16 if len(self) <= 65536 else np.uint32

    def codepoints(self) -> np.ndarray:
        return np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32)

    def decode(self, codes) -> str:
        return "".join(self.chars[int(i)] for i in codes)

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        return encode(lambda: iter([text]), self, what)


def file_chunks(path: str | Path) -> Chunks:
    """Decoded chunks of a UTF-8 file; errors name the file in one line."""
    path = input_file(path)

    def chunks() -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        offset, held = 0, ""  # a "\r" at the end of a chunk waits for a "\n" in the next
        with path.open("rb") as f:
            while block := f.read(CHUNK):
                try:
                    text = held + decoder.decode(block)
                except UnicodeDecodeError as e:
                    raise UserError(
                        f"{path}: not UTF-8 text (invalid byte at offset {offset + e.start})"
                    ) from None
                offset += len(block)
                text, held = (text[:-1], "\r") if text.endswith("\r") else (text, "")
                yield text.replace("\r\n", "\n")
            try:
                yield (held + decoder.decode(b"", final=True)).replace("\r\n", "\n")
            except UnicodeDecodeError:
                raise UserError(f"{path}: not UTF-8 text (truncated character at the end)") from None

    return chunks


def byte_chunks(path: Path) -> Chunks:
    """A file's bytes as characters U+0000..U+00FF, one per byte (read as Latin-1): the
    text of a corpus modelled byte by byte."""

    def chunks() -> Iterator[str]:
        with path.open("rb") as f:
            while block := f.read(CHUNK):
                yield block.decode("latin-1")

    return chunks


def string_chunks(text: str) -> Chunks:
    return lambda: (text[i : i + CHUNK] for i in range(0, len(text), CHUNK))


def _codepoints(chunk: str) -> np.ndarray:
    """The chunk's code points: uint8 when they all are below 256 (most text, and every
    text read as bytes), which `build_vocab` and `encode` then count and look up directly."""
    try:
        return np.frombuffer(chunk.encode("latin-1"), dtype=np.uint8)
    except UnicodeEncodeError:
        return np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32)


def build_vocab(chunks: Chunks) -> Vocab:
    """The sorted set of characters that occur in the text."""
    seen, small = np.zeros(0, dtype=np.uint32), np.zeros(256, dtype=bool)
    for chunk in chunks():
        cps = _codepoints(chunk)
        if cps.dtype == np.uint8:
            small |= np.bincount(cps, minlength=256) > 0
        else:
            seen = np.union1d(seen, np.unique(cps))
    seen = np.union1d(seen, np.flatnonzero(small).astype(np.uint32))
    return Vocab(seen.astype("<u4").tobytes().decode("utf-32-le"))


def encode(chunks: Chunks, vocab: Vocab, what: str = "text") -> np.ndarray:
    """The text as codes of `vocab`; characters outside it are a UserError that lists them."""
    table = vocab.codepoints()
    lookup = np.full(256, -1, dtype=np.int64)  # code of each code point below 256, -1 if none
    below = table[table < 256]
    lookup[below] = np.arange(len(below))
    parts = []
    for chunk in chunks():
        cps = _codepoints(chunk)
        if cps.dtype == np.uint8:
            idx = lookup[cps]
            bad = idx < 0
        else:
            idx = np.searchsorted(table, cps).clip(0, max(len(table) - 1, 0))
            bad = table[idx] != cps if len(table) else np.ones(len(cps), bool)
        if bad.any():
            unknown = "".join(sorted(set(chunk[i] for i in np.flatnonzero(bad)[:10_000])))
            raise UserError(f"{what} has characters outside the vocabulary: {unknown!r}")
        parts.append(idx.astype(vocab.dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=vocab.dtype)


@dataclass
class Corpus:
    name: str
    vocab: Vocab
    codes: np.ndarray  # (N,) small unsigned ints
    source: dict = field(default_factory=dict)  # what the text depends on, recorded in config.json
    standard_split: bool = False  # a benchmark's: train, validation, test in that order, 90/5/5
    probe: probes.Probe | None = None  # a probe's: its training text is generated endlessly
    seed: int = 0  # ... from this seed
    parts: dict[str, list[int]] | None = None  # ... and its fixed parts lie here

    def bounds(self, val_fraction: float, test_fraction: float) -> dict[str, list[int]]:
        """Where the train, test and validation parts lie (see `split`)."""
        if self.parts:
            return self.parts
        if not self.standard_split:
            return split(len(self.codes), val_fraction, test_fraction)
        if (val_fraction, test_fraction) != (STANDARD_HELD_OUT, STANDARD_HELD_OUT):
            raise UserError(f"{self.name} has the split every published figure uses (the first 90% trains, "
                            "the next 5% validates, the last 5% tests); --val-fraction and --test-fraction "
                            "do not apply to it")
        n = len(self.codes)
        val_start = n - 2 * int(round(n * STANDARD_HELD_OUT))
        test_start = n - int(round(n * STANDARD_HELD_OUT))
        return {"train": [0, val_start], "test": [test_start, n], "val": [val_start, test_start]}


    def train_streams(self, train: np.ndarray, batch: int, seq: int) -> Streams:
        """The streams training reads: through the training part, or a probe's endless text."""
        if self.probe:
            return probes.ProbeStreams(self.probe, self.seed, self.vocab.encode, batch, seq)
        return Streams(train, batch, seq)


PROBE_PART = 1 << 16  # characters in each fixed part of a probe's text


def for_run(data: DataConfig, seed: int) -> Corpus:
    """The text a run's DataConfig names (its --seed generates a probe's)."""
    probe_flags = [f"--{name.replace('_', '-')}" for name in ("probe_distance", "probe_length", "probe_symbols")
                   if getattr(data, name) is not None]
    if data.is_probe:
        if data.letters is not None:
            raise UserError("--letters goes with a text, not a probe")
        found = probes.probe(data.corpus[len(PROBE_PREFIX):], data.probe_distance, data.probe_length,
                             data.probe_symbols)
        return probe_corpus(found, seed)
    if probe_flags:
        raise UserError(f"{probe_flags[0]} goes with --corpus probe:NAME ({', '.join(probes.EPISODES)})")
    return load(data.corpus, data.text, data.letters)


def probe_corpus(probe: probes.Probe, seed: int) -> Corpus:
    """A probe as a corpus: its fixed parts (a sample of the training text, then test and
    validation episodes, each from a seed of its own) and its endless training streams."""
    vocab = Vocab(probe.alphabet)
    texts = [probe.text(np.random.default_rng([seed, tag]), PROBE_PART)
             for tag in (probes.SAMPLE, probes.TEST, probes.VAL)]
    codes = np.concatenate([vocab.encode(t) for t in texts])
    n = PROBE_PART
    bounds = {"train": [0, n], "test": [n, 2 * n], "val": [2 * n, 3 * n]}
    return Corpus(f"{PROBE_PREFIX}{probe.name}", vocab, codes, {"probe": probe.to_dict(), "seed": seed},
                  probe=probe, seed=seed, parts=bounds)


def load(corpus: str, text: str | None, letters: int | None = None) -> Corpus:
    """The training text named by --corpus or --text, with its vocabulary; with
    `letters`, only its first that many ASCII letters (see `letters_of`)."""
    source = {}
    if text is not None:
        chunks, name = file_chunks(text), str(text)
    elif corpus in CORPORA:
        (chunks, source), name = CORPORA[corpus](), corpus
    else:
        raise UserError(f"unknown corpus {corpus!r}; choose one of {', '.join(NAMES)}")
    if letters is not None:
        return Corpus(f"the first {letters} letters of {name}", Vocab(string.ascii_lowercase),
                      letters_of(chunks, letters, name))
    vocab = build_vocab(chunks)
    codes = encode(chunks, vocab)
    if len(codes) == 0:
        raise UserError(f"{name}: the text is empty")
    return Corpus(name, vocab, codes, source, standard_split=text is None and corpus in BENCHMARKS)


def letters_of(chunks: Chunks, n: int, name: str = "the text") -> np.ndarray:
    """The first n ASCII letters of a text, lower-cased, as codes 0..25 (a..z)."""
    parts, total = [], 0
    for chunk in chunks():
        raw = np.frombuffer(chunk.lower().encode("ascii", "ignore"), dtype=np.uint8)
        found = raw[(raw >= ord("a")) & (raw <= ord("z"))] - ord("a")
        parts.append(found[: n - total])
        total += len(parts[-1])
        if total >= n:
            break
    codes = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    if len(codes) < 2:
        raise UserError(f"{name} has {len(codes)} ASCII letters; it needs at least 2")
    return codes.astype(np.uint8)


def python_docs() -> str:
    """The Python reference documentation that ships with CPython (about 460 KB)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def huck_finn_path() -> Path:
    """Project Gutenberg ebook 76, downloaded once and cached with its SHA-256."""
    path = cache_dir() / "huck-finn.txt"
    digest_path = path.with_suffix(".txt.sha256")
    if path.is_file() and digest_path.is_file():
        if sha256(path.read_bytes()) == digest_path.read_text().strip():
            return path
    url = os.environ.get(URL_ENV) or HUCK_FINN_URL
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            raw = response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"cannot download Huckleberry Finn from {url} ({reason}) and no cached copy is "
            f"in {path.parent}; train on a file with --text PATH, or on the built-in "
            "--corpus python-docs"
        ) from None
    try:
        body = strip_gutenberg(raw.decode("utf-8-sig")).encode()
    except UnicodeDecodeError:
        raise UserError(f"{url}: the download is not UTF-8 text") from None
    atomic_write(path, body)
    atomic_write(digest_path, (sha256(body) + "\n").encode())
    return path


# Folders of the standard library that are not its source: installed packages and the
# test suites (test, tests, idle_test); files that describe this build of Python, not
# the library (_sysconfigdata*, config-*/), so that the text depends on the version alone.
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test"}


def stdlib_root() -> Path:
    """The running Python's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[Path]:
    """The standard library's source files under `root`, in sorted path order."""
    found = []
    for path in root.rglob("*.py"):
        folders = path.relative_to(root).parts[:-1]
        if STDLIB_SKIP & set(folders) or any(f.startswith("config-") for f in folders):
            continue
        if not path.name.startswith("_sysconfigdata"):
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def python_stdlib_path() -> Path:
    """The source of the running Python's standard library as one text (every file of
    `stdlib_files`, each followed by a newline; about 12 MB on CPython 3.11), built once
    into the cache, atomically, with its SHA-256 beside it."""
    path = cache_dir() / f"python-stdlib-{platform.python_version()}.txt"
    digest_path = path.with_suffix(".txt.sha256")
    if path.is_file() and digest_path.is_file():
        if sha256(path.read_bytes()) == digest_path.read_text().strip():
            return path
    root = stdlib_root()
    files = stdlib_files(root)
    if not files:
        raise UserError(f"{root}: no standard library source here (a Python without its .py files?); "
                        "train on a file with --text PATH")
    body = b"".join(p.read_bytes() + b"\n" for p in files)
    atomic_write(path, body)
    atomic_write(digest_path, (sha256(body) + "\n").encode())
    return path


def _python_stdlib() -> tuple[Chunks, dict]:
    path = python_stdlib_path()
    digest = path.with_suffix(".txt.sha256").read_text().strip()
    return file_chunks(path), {"python": platform.python_version(), "sha256": digest}


@dataclass(frozen=True)
class Benchmark:
    """A standard benchmark text, published as a zip archive of one file."""

    name: str
    url: str
    zip_size: int
    zip_sha256: str
    size: int  # bytes of the file inside, named `name`
    sha256: str
    unit: str  # what is modelled: "byte" (each byte a symbol) or "character"

    @property
    def url_env(self) -> str:
        return f"LONGMEM_{self.name.upper()}_URL"


# The digests are the ones published with the files and used by many projects: the
# archive's and its one file's (enwik8's md5 a1fa5ffddb56f4953e226637dabbb36a is the
# Hutter Prize's).
BENCHMARKS = {
    "enwik8": Benchmark("enwik8", "http://mattmahoney.net/dc/enwik8.zip", 36_445_475,
                        "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc", 100_000_000,
                        "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8", "byte"),
    "text8": Benchmark("text8", "http://mattmahoney.net/dc/text8.zip", 31_344_016,
                       "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232", 100_000_000,
                       "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7", "character"),
}
STANDARD_HELD_OUT = 0.05  # the benchmarks' validation and test parts, each 5M of 100M


def benchmark_path(spec: Benchmark) -> Path:
    """The benchmark's file in the cache: downloaded once from its address (or the mirror
    in $LONGMEM_<NAME>_URL), the archive and the file inside checked against their
    published sizes and SHA-256 before anything is kept. A failed download, a wrong or
    truncated file, or an interruption leaves nothing in the cache."""
    path = cache_dir() / spec.name
    digest_path = path.with_name(f"{spec.name}.sha256")
    if path.is_file() and digest_path.is_file() and digest_path.read_text().strip() == spec.sha256:
        if path.stat().st_size == spec.size and file_sha256(path) == spec.sha256:
            return path
    url = os.environ.get(spec.url_env) or spec.url
    path.parent.mkdir(parents=True, exist_ok=True)
    archive = path.with_name(f".{spec.name}.zip.{os.getpid()}.part")
    inside = path.with_name(f".{spec.name}.{os.getpid()}.part")
    print(f"longmem: downloading {spec.name} from {url} ({spec.zip_size / 1e6:.0f} MB, once)", file=sys.stderr)
    try:
        _download(url, archive, spec)
        _check(archive, spec.zip_size, spec.zip_sha256, f"the download from {url}", f"{spec.name}.zip")
        _unzip(archive, spec.name, inside, url)
        _check(inside, spec.size, spec.sha256, f"{spec.name} in the archive from {url}", spec.name)
        os.replace(inside, path)
        atomic_write(digest_path, (spec.sha256 + "\n").encode())
    finally:
        archive.unlink(missing_ok=True)
        inside.unlink(missing_ok=True)
    return path


def _download(url: str, to: Path, spec: Benchmark) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, to.open("wb") as out:
            while block := response.read(CHUNK):
                out.write(block)
                if out.tell() > spec.zip_size:
                    break  # longer than the archive: _check says so
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"cannot download {spec.name} from {url} ({reason}); nothing was cached; set "
                        f"{spec.url_env} to a mirror, or train on a file with --text PATH") from None


def _check(path: Path, size: int, digest: str, what: str, expected: str) -> None:
    found = path.stat().st_size
    if found != size:
        raise UserError(f"{what} is {found:,} bytes, not the {size:,} of {expected} (truncated or another "
                        "file); nothing was cached")
    if file_sha256(path) != digest:
        raise UserError(f"{what} is not {expected} (its SHA-256 differs from the published {digest[:12]}...); "
                        "nothing was cached")


def _unzip(archive: Path, member: str, to: Path, url: str) -> None:
    try:
        with zipfile.ZipFile(archive) as z, z.open(member) as src, to.open("wb") as out:
            while block := src.read(CHUNK):
                out.write(block)
    except KeyError:
        raise UserError(f"the archive from {url} holds no file {member!r}; nothing was cached") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(f"the archive from {url} is damaged ({e}); nothing was cached") from None


def _benchmark(name: str) -> tuple[Chunks, dict]:
    spec = BENCHMARKS[name]
    return byte_chunks(benchmark_path(spec)), {"sha256": spec.sha256, "unit": spec.unit}


# The built-in corpora (--corpus NAME): each a function that gives its text's chunks and
# what the text depends on (recorded in the run's config.json, checked when it is read).
CORPORA = {
    "python-docs": lambda: (string_chunks(python_docs()), {}),
    "huck-finn": lambda: (file_chunks(huck_finn_path()), {}),
    "python-stdlib": _python_stdlib,
    "enwik8": lambda: _benchmark("enwik8"),
    "text8": lambda: _benchmark("text8"),
}
NAMES = [*CORPORA, *(PROBE_PREFIX + name for name in probes.EPISODES)]  # what --corpus may name


def strip_gutenberg(text: str) -> str:
    """The book without Project Gutenberg's header and licence footer."""
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("*** START OF")), 0)
    end = next(
        (i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("*** END OF")),
        len(lines),
    )
    return "\n".join(lines[start:end]).strip("\n") + "\n"


def split(n: int, val_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """Split positions [0, n) into train, test and validation, in that order.

    The last `val_fraction` is validation and the `test_fraction` before it is
    test, so the held-out text is never seen in training.
    """
    check(DataConfig(val_fraction=val_fraction, test_fraction=test_fraction))
    check_fractions(val_fraction, test_fraction)
    val_start = n - int(round(n * val_fraction))
    test_start = val_start - int(round(n * test_fraction))
    return {"train": [0, test_start], "test": [test_start, val_start], "val": [val_start, n]}


def parts(codes: np.ndarray, bounds: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """The codes of each part that `split` bounds (views, not copies)."""
    return {name: codes[a:b] for name, (a, b) in bounds.items()}
