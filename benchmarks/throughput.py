"""Training throughput of longmem's compiled step against torch.nn.LSTM.

Both train the same network (one-hot input of V symbols, one LSTM layer of H
cells, softmax over V) with the same RMSprop update and gradient clipping, on
the same machine, in one run. Prints characters per second of each, their
ratio (longmem / torch) and longmem's compile time.

    pip install -e ".[bench]"
    python benchmarks/throughput.py [--hidden 256 512] [--steps 20]

Run it on a quiet machine: torch's CPU kernels slow down sharply when another
process holds a core.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from longmem import engine
from longmem.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from longmem.nets import lstm
from longmem.train import Trainer

V = 100


def time_alternately(steps: dict, n: int, repeats: int) -> dict[str, float]:
    """Median seconds per step of each function, timed in alternating blocks of n
    steps so that a slow spell of a shared machine hits both alike."""
    times = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm up
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(n):
                step()
            times[name].append((time.perf_counter() - start) / n)
    return {name: statistics.median(t) for name, t in times.items()}


def longmem_step(H: int, B: int, T: int, mode: str):
    cfg = RunConfig(
        model=ModelConfig(hidden=H, vocab_size=V, dropout=0.0),
        optim=OptimConfig(optimizer="rmsprop", lr=2e-3, rho=0.95, eps=1e-8, clip=5.0),
        train=TrainConfig(batch=B, seq=T),
    )
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    trainer = Trainer(cfg, lstm.init_params(cfg.model, V, rng), mode)
    x = rng.integers(0, V, (T, B)).astype(np.int32)
    y = rng.integers(0, V, (T, B)).astype(np.int32)
    state = {"h": np.zeros((1, B, H), np.float32)}
    state["c"] = state["h"].copy()
    lr = np.float32(2e-3)

    def step():
        state["h"], state["c"], loss, *_ = trainer.step_fn(x, y, state["h"], state["c"], lr)
        float(loss)  # wait for the result

    step()
    return step, time.perf_counter() - start


def torch_step(H: int, B: int, T: int):
    import torch

    torch.manual_seed(0)
    net = torch.nn.LSTM(V, H)
    out = torch.nn.Linear(H, V)
    params = list(net.parameters()) + list(out.parameters())
    opt = torch.optim.RMSprop(params, lr=2e-3, alpha=0.95, eps=1e-8)
    x = torch.nn.functional.one_hot(torch.randint(0, V, (T, B)), V).float()
    y = torch.randint(0, V, (T * B,))
    state = {"h": torch.zeros(1, B, H), "c": torch.zeros(1, B, H)}

    def step():
        hs, (h, c) = net(x, (state["h"], state["c"]))
        loss = torch.nn.functional.cross_entropy(out(hs).reshape(-1, V), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        state["h"], state["c"] = h.detach(), c.detach()
        loss.item()

    return step, torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks of each")
    parser.add_argument("--backend", default="jax", choices=engine.BACKENDS)
    args = parser.parse_args()
    mode = engine.configure(args.backend, "cpu")
    B, T = args.batch, args.seq
    print(f"training step, B={B} T={T} V={V}, RMSprop + clipping; characters per second")
    print(f"{'H':>5} {'longmem':>10} {'torch':>10} {'ratio':>6} {'compile s':>10}")
    for H in args.hidden:
        step, compile_s = longmem_step(H, B, T, mode)
        peer_step, threads = torch_step(H, B, T)
        seconds = time_alternately({"longmem": step, "torch": peer_step}, args.steps, args.repeats)
        ours, peer = B * T / seconds["longmem"], B * T / seconds["torch"]
        print(f"{H:>5} {ours:>10.0f} {peer:>10.0f} {ours / peer:>6.2f} {compile_s:>10.1f}")
    print(f"(longmem backend {args.backend}; torch {threads} threads)")


if __name__ == "__main__":
    main()
