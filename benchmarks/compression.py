"""longmem's compressor against the compressors people use, on the same files in one run.

    python benchmarks/compression.py ../shared/data/huck_fin.txt [FILE...] [--builtin] [--stdlib]
        [--repeat 3] [-- --replay 1]

`--builtin` adds the built-in corpus (the Python reference documentation
that ships with CPython, about 460 KB, as UTF-8), `--stdlib` the
python-stdlib corpus (the standard library's source, about 13 MB): the large
input, where the first tenth of the file is also compressed alone, to show
whether the speed holds as the file grows. `--repeat N` runs longmem N times
and reports the median of its speeds (each run's figures are printed). For each file: longmem
compress and decompress (self-contained mode, the defaults plus any flags
after --), gzip -9, bzip2 -9, xz -9e, zstd -19 and, when `7z` is installed,
7-Zip's PPMd (order 16; skipped, saying so, when not). Every archive is
decompressed and compared with the original. Prints a table: size, bits per
character of the original, compress and decompress KB/s (wall), peak memory
(maximum resident set of the child process), and whether the round trip was
exact. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LARGE = 4 * 2**20  # bytes: above this, the first tenth is measured too

PEERS = {  # name: (compress argv, decompress argv), reading stdin and writing stdout
    "gzip -9": (["gzip", "-9", "-c"], ["gzip", "-d", "-c"]),
    "bzip2 -9": (["bzip2", "-9", "-c"], ["bzip2", "-d", "-c"]),
    "xz -9e": (["xz", "-9e", "-c"], ["xz", "-d", "-c"]),
    "zstd -19": (["zstd", "-19", "-q", "-c"], ["zstd", "-d", "-q", "-c"]),
}


def timed(argv: list[str], stdin: Path, stdout: Path) -> tuple[float, int]:
    """Run argv from stdin to stdout; wall seconds and its peak resident memory (bytes)."""
    with open(stdin, "rb") as src, open(stdout, "wb") as dst:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=src, stdout=dst)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource use
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss * 1024  # KB on Linux


def measure(name: str, pack: list[str], unpack: list[str], original: Path, tmp: Path) -> dict:
    packed, restored = tmp / f"{name}.packed", tmp / f"{name}.restored"
    c_seconds, c_peak = timed(pack, original, packed)
    d_seconds, d_peak = timed(unpack, packed, restored)
    n = original.stat().st_size
    return {"program": name, "size": packed.stat().st_size, "bpc": 8 * packed.stat().st_size / max(1, n),
            "compress_kbs": n / 1024 / c_seconds, "decompress_kbs": n / 1024 / d_seconds,
            "peak_mb": max(c_peak, d_peak) / 2**20, "exact": restored.read_bytes() == original.read_bytes()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--builtin", action="store_true", help="also the built-in python-docs corpus")
    parser.add_argument("--stdlib", action="store_true", help="also the python-stdlib corpus (about 13 MB)")
    parser.add_argument("--repeat", type=int, default=1, help="longmem runs per file (median speeds)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])  # after --: more `longmem compress` flags
    args.extra = argv[cut + 1 :]
    work = tempfile.TemporaryDirectory()
    if args.builtin:
        from longmem.corpus import python_docs

        args.files.append(Path(work.name) / "python-docs.txt")
        args.files[-1].write_text(python_docs(), encoding="utf-8")
    if args.stdlib:
        from longmem.corpus import python_stdlib_path

        args.files.append(python_stdlib_path())
    if not args.files:
        parser.error("give files to compress, or --builtin or --stdlib")
    extra = args.extra
    longmem = [sys.executable, "-m", "longmem"]
    peers = dict(PEERS)
    if shutil.which("7z"):
        peers["7z PPMd o16"] = None
    else:
        print("7z is not installed: PPMd skipped")
    for path in args.files:
        if not path.is_file():
            sys.exit(f"{path}: no such file")
        print(f"\n{path} ({path.stat().st_size:,} bytes)")
        print(f"{'program':22s} {'size':>10s} {'bits/char':>9s} {'comp KB/s':>10s} {'dec KB/s':>9s} "
              f"{'peak MB':>8s}  exact")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            pack, unpack = [*longmem, "compress", "-", "--quiet", *extra], [*longmem, "decompress", "-", "--quiet"]
            runs = [measure("longmem", pack, unpack, path, tmp) for _ in range(args.repeat)]
            for r in runs if args.repeat > 1 else []:
                print(f"  a run: {r['compress_kbs']:.1f} KB/s compressing, {r['decompress_kbs']:.1f} decompressing")
            rows = [{**runs[0], **{key: statistics.median(r[key] for r in runs)
                                   for key in ("compress_kbs", "decompress_kbs", "peak_mb")}}]
            rows[0]["program"] = "longmem " + " ".join(extra) if extra else "longmem"
            if path.stat().st_size > LARGE:
                tenth = tmp / "tenth"
                tenth.write_bytes(path.read_bytes()[: path.stat().st_size // 10])
                first = measure("longmem", pack, unpack, tenth, tmp)
                print(f"  the first tenth alone: {first['compress_kbs']:.1f} KB/s compressing, "
                      f"{first['decompress_kbs']:.1f} decompressing, {first['bpc']:.3f} bits/char, "
                      f"peak {first['peak_mb']:.0f} MB")
            for name, argv in peers.items():
                if argv is None:  # 7-Zip reads and writes files, not pipes
                    archive = tmp / "p.7z"
                    out = tmp / "ppmd"
                    started = time.perf_counter()
                    subprocess.run(["7z", "a", "-m0=PPMd:o=16:mem=256m", "-bso0", archive, path], check=True)
                    c = time.perf_counter() - started
                    started = time.perf_counter()
                    subprocess.run(["7z", "x", f"-o{out}", "-bso0", archive], check=True)
                    d = time.perf_counter() - started
                    n = path.stat().st_size
                    rows.append({"program": name, "size": archive.stat().st_size,
                                 "bpc": 8 * archive.stat().st_size / n, "compress_kbs": n / 1024 / c,
                                 "decompress_kbs": n / 1024 / d, "peak_mb": float("nan"),
                                 "exact": (out / path.name).read_bytes() == path.read_bytes()})
                else:
                    rows.append(measure(name, *argv, path, tmp))
        for r in sorted(rows, key=lambda r: r["bpc"]):
            print(f"{r['program']:22s} {r['size']:>10,} {r['bpc']:9.3f} {r['compress_kbs']:10.1f} "
                  f"{r['decompress_kbs']:9.1f} {r['peak_mb']:8.0f}  {'yes' if r['exact'] else 'NO'}")
    print(f"\n{os.cpu_count()} CPUs; figures are wall time, so a busy machine shows lower KB/s")


if __name__ == "__main__":
    main()
