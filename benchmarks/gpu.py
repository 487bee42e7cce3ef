"""longmem on a GPU: the same training on GPU and CPU from one seed, and the
training step's speed against torch.nn.LSTM (cuDNN) on the same GPU.

Run through `benchmarks/gpu_check.sh`, which installs the gpu extra first.
Prints one table; exits 1 when JAX sees no GPU or the GPU's losses do not
follow the CPU's.

    python benchmarks/gpu.py [--hidden 256 512 1024] [--batch 128 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from throughput import Peer, V, time_alternately

TOLERANCE = 1e-3  # relative, on the training loss after a few logged steps


def losses(device: str, steps: int, folder: str, name: str) -> dict[int, float]:
    """Training losses of a short `longmem train` run on `device`, by step, with float32
    products computed in full float32 (a GPU's default TF32 would differ by more)."""
    run = Path(folder) / name
    subprocess.run([sys.executable, "-m", "longmem", "train", "--device", device, "--run-dir", str(run),
                    "--steps", str(steps), "--log-every", "10", "--eval-every", "1000", "--sample-every", "0"],
                   check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest"))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="steps of the GPU-against-CPU run")
    parser.add_argument("--device", default="gpu", choices=["gpu", "cpu"],
                        help="cpu: a dry run of this script where there is no GPU")
    args = parser.parse_args()
    # This process, the training runs and the timed peers share the GPU: none may
    # take most of its memory up front, as JAX does by default.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    try:
        gpu = jax.devices(args.device)[0]
    except RuntimeError:
        print("gpu.py: JAX sees no GPU (is the gpu extra installed, and a driver present?)", file=sys.stderr)
        return 1
    print(f"device: {gpu.device_kind}; jax {jax.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        on_gpu, on_cpu = (losses(args.device, args.steps, folder, "device"),
                          losses("cpu", args.steps, folder, "cpu"))
    worst = max(abs(on_gpu[s] - on_cpu[s]) / abs(on_cpu[s]) for s in on_cpu)
    agree = worst <= TOLERANCE
    print(f"training loss, GPU against CPU from one seed, {args.steps} steps: largest relative "
          f"difference {worst:.2e} ({'agree' if agree else 'DIFFER'}, tolerance {TOLERANCE:g})")

    try:
        import torch

        peer = torch.cuda.is_available() and args.device == "gpu"
    except ImportError:
        peer = False
    print(f"\ntraining step, T={args.seq} V={V}, RMSprop + clipping; characters per second"
          + ("" if peer else " (no CUDA build of torch here: no peer)"))
    print(f"{'B':>5} {'H':>5} {'longmem':>10} {'torch':>10} {'ratio':>6} {'compile s':>10}")
    for B in args.batch:
        for H in args.hidden:
            peers = {"longmem": Peer("longmem", H, B, args.seq, "--device", args.device)}
            if peer:
                peers["torch"] = Peer("torch", H, B, args.seq, "--device", args.device)
            seconds = time_alternately(peers, 20, 5)
            compile_s = float(peers["longmem"].info)
            for each in peers.values():
                each.close()
            ours = B * args.seq / seconds["longmem"]
            theirs = B * args.seq / seconds["torch"] if peer else np.nan
            print(f"{B:>5} {H:>5} {ours:>10.0f} {theirs:>10.0f} {ours / theirs:>6.2f} {compile_s:>10.1f}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
