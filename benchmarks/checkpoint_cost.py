"""What a checkpoint costs for a model: bytes on disk, seconds to write and to load.

    python benchmarks/checkpoint_cost.py [--hidden 256] [--layers 1] [--batch 128]

Builds the model with the given shape and the built-in corpus's vocabulary
and RMSprop state, then writes and reads the checkpoint several times
(each write is fsynced and renamed, as in training).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from longmem import checkpoint, engine
from longmem.config import ModelConfig, RunConfig, TrainConfig
from longmem.corpus import build_vocab, python_docs, string_chunks
from longmem.loop import TrainState
from longmem.nets import lstm
from longmem.step import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    mode = engine.configure("jax", "cpu")
    vocab = build_vocab(string_chunks(python_docs()))
    cfg = RunConfig(
        model=ModelConfig(layers=args.layers, hidden=args.hidden),
        train=TrainConfig(batch=args.batch),
    )
    trainer = Trainer(cfg, lstm.init_params(cfg.model, len(vocab), np.random.default_rng(0)), mode)
    state = TrainState()
    h = np.zeros((args.layers, args.batch, args.hidden), np.float32)
    meta = {"config": cfg.to_dict(), "vocab": vocab.chars, "state": state.to_meta()}
    writes, reads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for step in range(args.repeats):
            start = time.perf_counter()
            arrays = trainer.arrays({"h": h, "c": h})
            path = checkpoint.save(Path(tmp), step, arrays, meta, keep=2)
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            checkpoint.read(path)
            reads.append(time.perf_counter() - start)
        size = path.stat().st_size
    params = sum(v.get_value().size for v in trainer.params.values())
    print(f"model {args.layers} x {args.hidden}, batch {args.batch}, vocabulary {len(vocab)}, "
          f"{params:,} parameters, RMSprop")
    print(f"checkpoint size   {size:,} bytes ({size / 2**20:.2f} MiB)")
    print(f"write (median)    {statistics.median(writes) * 1000:.1f} ms, including fsync and rename")
    print(f"read + verify     {statistics.median(reads) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
