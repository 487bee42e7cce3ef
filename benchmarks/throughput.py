"""Training throughput of longmem against torch.nn.LSTM: the compiled step, and
`longmem train` end to end against the same training written in plain PyTorch.

The step: both train the same network (one-hot input of V symbols, one LSTM
layer of H cells, softmax over V) with the same RMSprop update and gradient
clipping. Each peer runs in a process of its own, as its users run it, and
the peers time blocks of steps in turn, so that a slow spell of a shared
machine hits them alike.

End to end: `longmem train` with dropout 0.3 on the LSTM's output and 0.3 on
its recurrent weights (given: the defaults before they followed the passes a
run makes, kept so the figures compare), RMSprop, clipping 5, B=128, T=64, on
the built-in corpus, against a plain PyTorch trainer of the same network and
settings on the same text (`torch.nn.LSTM` called with its recurrent weights
dropped, one-hot input, dropout on its output, RMSprop, clipping,
the same B and T, the loss read every step as longmem does). Each figure is
the difference between a long and a short run of the real program, so
start-up and compiling cancel; evaluation, samples and checkpoints are left
out of both (--eval-every, --sample-every, --checkpoint-every-steps past the
end), so what is compared is training. Rounds alternate the programs and
the median is reported.

longmem sets glibc's malloc up so that large freed blocks are reused (see
`engine._reuse_freed_memory`); a plain PyTorch program does not, and loses
much of its speed to page faults too. Both tables therefore show two torch
peers: "torch", the program as written, and "torch*", the same with the same
malloc settings given through the environment.

    pip install -e ".[bench]"
    python benchmarks/throughput.py [--hidden 256 512] [--rounds 3] [--no-end-to-end]

The models at their own windows (`--models`, then only that table): each
SPEC is NAME[:LAYERSxHIDDEN]@T[xB] (B: --batch unless given), e.g.

    python benchmarks/throughput.py --models lstm@64 mingru:3x128@256x32 mingru:3x128@1024

times the training step of each, as `longmem train` builds it (its default
dropouts for that model, B streams of T characters), in alternating
blocks, each peer in a process of its own; characters per second and the ratio
to the first.

Run it on a quiet machine: torch's CPU kernels slow down sharply when another
process holds a core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from longmem import config, engine
from longmem.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from longmem.nets import NETS
from longmem.step import Trainer

V = 100
# Both drop probabilities of the tables with dropout: 0.3, the defaults before they followed the
# passes a run makes (dropout.AUTO), given explicitly so that the figures compare over time.
DROPOUT = 0.3
# glibc's malloc set up through the environment as longmem sets it up in-process
TUNED = {variable: str(value) for _, variable, value in engine.MALLOC}
TUNED_TEXT = " ".join(f"{k}={v}" for k, v in TUNED.items())


class Peer:
    """One trainer in a process of its own, timing blocks of steps when asked: each
    peer runs as its users run it (longmem sets glibc's malloc up as `longmem
    train` does; a plain PyTorch program does not), and the blocks alternate so
    that a slow spell of a shared machine hits every peer alike."""

    def __init__(self, kind: str, H: int, B: int, T: int, *flags: str, env: dict | None = None):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--peer", kind, "--hidden", str(H), "--batch", str(B), "--seq", str(T),
             *flags],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ, **(env or {})))
        self.info = self.process.stdout.readline().strip()  # after compiling and one warm-up step
        if not self.info:
            raise SystemExit(f"the {kind} peer did not start")

    def block(self, n: int) -> float:
        """Seconds per step over n steps."""
        self.process.stdin.write(f"{n}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline()) / n

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def time_alternately(peers: dict, n: int, repeats: int) -> dict[str, float]:
    """Median seconds per step of each peer, timed in alternating blocks of n steps."""
    times = {name: [] for name in peers}
    for _ in range(repeats):
        for name, peer in peers.items():
            times[name].append(peer.block(n))
    return {name: statistics.median(t) for name, t in times.items()}


def serve(kind: str, H: int, B: int, T: int, device: str, backend: str, spec: str | None = None) -> None:
    """Be a peer: build the step and tell what it cost (compile seconds, or torch's
    threads), then time blocks of steps, their sizes read from stdin."""
    if kind == "net":
        step, info = net_step(spec, B, engine.configure(backend, device))
    elif kind == "torch":
        step, info = torch_step(H, B, T, "cuda" if device == "gpu" else "cpu")
    else:
        mode = engine.configure(backend, device)
        dropouts = (DROPOUT, DROPOUT) if kind == "longmem-dropout" else ()
        step, info = longmem_step(H, B, T, mode, *dropouts)
    print(info, flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        for _ in range(int(line)):
            step()
        print(time.perf_counter() - start, flush=True)


def model_spec(spec: str, batch: int) -> tuple[str, dict, int, int]:
    """NAME[:LxH]@T[xB] -> (name, ModelConfig sizes, T, B), B `batch` unless given."""
    head, _, window = spec.partition("@")
    name, _, size = head.partition(":")
    layers, _, hidden = size.partition("x")
    T, _, B = window.partition("x")
    if name not in NETS or not T.isdigit() or (B and not B.isdigit()) or (
            size and not (layers.isdigit() and hidden.isdigit())):
        raise SystemExit(f"--models: {spec!r} is not NAME[:LAYERSxHIDDEN]@T[xBATCH] with NAME one of "
                         f"{', '.join(NETS)}")
    return name, {"layers": int(layers), "hidden": int(hidden)} if size else {}, int(T), int(B or batch)


def net_step(spec: str, B: int, mode: str):
    """The training step of the model `spec` as `longmem train` builds it: its dropout masks
    (for the options it reads, left to the automatic choice, drawn here at 0: a mask costs
    the same at any probability), RMSprop, clipping."""
    name, sizes, T, B = model_spec(spec, B)
    step, seconds, params = timed_step(config.validate(config.from_args(
        argparse.Namespace(model=name, **sizes, batch=B, seq=T))), mode)
    return step, f"{seconds:.1f} {params}"


def timed_step(cfg: RunConfig, mode: str):
    """One training step of `cfg`'s model on a fixed random window, state carried, as a
    function that waits for its result; the seconds to build and run it once; the
    parameter count."""
    net, t = NETS[cfg.model.model], cfg.train
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    trainer = Trainer(cfg, net.init_params(cfg.model, V, rng), mode)
    x = rng.integers(0, V, (t.seq, t.batch)).astype(np.int32)
    y = rng.integers(0, V, (t.seq, t.batch)).astype(np.int32)
    state = net.init_state(cfg.model, t.batch)
    counter = [0]

    def step():
        new, values = trainer.step(x, y, state, counter[0], trainer.cfg.optim.lr)
        state.update(new)
        counter[0] += 1
        float(values["loss"])  # wait for the result

    step()
    return step, time.perf_counter() - start, sum(p.get_value().size for p in trainer.params.values())


def compare_models(specs: list[str], B: int, n: int, repeats: int, backend: str) -> None:
    print(f"training step of each model at its own window, as longmem train builds it (its dropout masks), "
          f"V={V}; median of {repeats} alternating blocks of {n} steps; characters per second")
    peers = {spec: Peer("net", 0, B, 0, "--model-spec", spec, "--backend", backend, "--vocab", str(V))
             for spec in specs}
    seconds = time_alternately(peers, n, repeats)
    first = None
    print(f"{'model':>24} {'parameters':>11} {'T':>6} {'B':>5} {'chars/s':>10} {'ratio':>6} {'compile s':>10}")
    for spec, peer in peers.items():
        _, _, T, streams = model_spec(spec, B)
        rate = streams * T / seconds[spec]
        first = first or rate
        compile_s, params = peer.info.split()
        print(f"{spec.split('@')[0]:>24} {int(params):>11,} {T:>6} {streams:>5} {rate:>10.0f} {rate / first:>6.2f} "
              f"{float(compile_s):>10.1f}")
        peer.close()


def longmem_step(H: int, B: int, T: int, mode: str, dropout: float = 0.0, weight_drop: float = 0.0):
    cfg = RunConfig(
        model=ModelConfig(hidden=H, dropout=dropout, weight_drop=weight_drop),
        optim=OptimConfig(optimizer="rmsprop", lr=2e-3, rho=0.95, eps=1e-8, clip=5.0),
        train=TrainConfig(batch=B, seq=T),
    )
    step, seconds, _ = timed_step(cfg, mode)
    return step, f"{seconds:.1f}"


def torch_step(H: int, B: int, T: int, device: str = "cpu"):
    import torch

    torch.manual_seed(0)
    net = torch.nn.LSTM(V, H).to(device)
    out = torch.nn.Linear(H, V).to(device)
    params = list(net.parameters()) + list(out.parameters())
    opt = torch.optim.RMSprop(params, lr=2e-3, alpha=0.95, eps=1e-8)
    x = torch.nn.functional.one_hot(torch.randint(0, V, (T, B)), V).float().to(device)
    y = torch.randint(0, V, (T * B,)).to(device)
    state = {"h": torch.zeros(1, B, H, device=device), "c": torch.zeros(1, B, H, device=device)}

    def step():
        hs, (h, c) = net(x, (state["h"], state["c"]))
        loss = torch.nn.functional.cross_entropy(out(hs).reshape(-1, V), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        state["h"], state["c"] = h.detach(), c.detach()
        loss.item()

    step()
    return step, str(torch.get_num_threads())


def torch_train(steps: int, H: int, B: int, T: int, dropout: float, weight_drop: float) -> None:
    """A plain PyTorch trainer with longmem train's defaults, on the built-in corpus; the
    recurrent weights are dropped (DropConnect) as AWD-LSTM's WeightDrop does it."""
    import torch

    from longmem.batches import Streams
    from longmem.corpus import load, split

    corpus = load("python-docs", None)
    start, stop = split(len(corpus.codes), 0.05, 0.05)["train"]
    streams = Streams(corpus.codes[start:stop], B, T)
    V = len(corpus.vocab)
    torch.manual_seed(0)
    net, drop, out = torch.nn.LSTM(V, H), torch.nn.Dropout(dropout), torch.nn.Linear(H, V)
    params = [*net.parameters(), *out.parameters()]
    opt = torch.optim.RMSprop(params, lr=5e-3, alpha=0.95, eps=1e-8)
    h = c = torch.zeros(1, B, H)
    for k in range(steps):
        x, y = (torch.from_numpy(a.astype(np.int64)) for a in streams.window(k % streams.windows))
        weights = dict(net.named_parameters())
        weights["weight_hh_l0"] = torch.nn.functional.dropout(weights["weight_hh_l0"], weight_drop)
        hs, (h, c) = torch.func.functional_call(net, weights, (torch.nn.functional.one_hot(x, V).float(), (h, c)))
        loss = torch.nn.functional.cross_entropy(out(drop(hs)).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        h, c = h.detach(), c.detach()
        loss.item()


def end_to_end(H: int, rounds: int, short: int, long: int) -> dict[str, float]:
    """Median training chars/s of `longmem train` and of the PyTorch trainer."""
    quiet = ["--eval-every", "100000", "--sample-every", "0", "--checkpoint-every-steps", "100000",
             "--checkpoint-every-seconds", "100000", "--dropout", str(DROPOUT), "--weight-drop", str(DROPOUT)]

    def seconds(program: str, steps: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = ([sys.executable, "-m", "longmem", "train", "--run-dir", f"{tmp}/run", "--steps", str(steps),
                    "--hidden", str(H), *quiet] if program == "longmem" else
                   [sys.executable, __file__, "--torch-train", str(steps), "--hidden", str(H)])
            started = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "src"),
                                    **(TUNED if program == "torch*" else {})))
            return time.perf_counter() - started

    speeds = {"longmem": [], "torch": [], "torch*": []}
    for _ in range(rounds):
        for program in speeds:
            speeds[program].append((long - short) * 128 * 64 / (seconds(program, long) - seconds(program, short)))
    return {name: statistics.median(v) for name, v in speeds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks of each")
    parser.add_argument("--backend", default="jax", choices=engine.BACKENDS)
    parser.add_argument("--rounds", type=int, default=3, help="end to end: alternating rounds")
    parser.add_argument("--short", type=int, default=30, help="end to end: steps of the short runs")
    parser.add_argument("--long", type=int, default=130, help="end to end: steps of the long runs")
    parser.add_argument("--no-end-to-end", action="store_true", help="time the step alone")
    parser.add_argument("--torch-train", type=int, metavar="STEPS", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", metavar="SPEC", help="time these models at their windows instead")
    parser.add_argument("--vocab", type=int, default=100, help="with --models: symbols (python-stdlib has about 230)")
    parser.add_argument("--peer", choices=["longmem", "longmem-dropout", "torch", "net"], help=argparse.SUPPRESS)
    parser.add_argument("--model-spec", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global V
    V = args.vocab
    if args.torch_train is not None:  # the peer of an end-to-end round
        return torch_train(args.torch_train, args.hidden[0], 128, 64, DROPOUT, DROPOUT)
    if args.peer:
        return serve(args.peer, args.hidden[0], args.batch, args.seq, args.device, args.backend, args.model_spec)
    if args.models:
        for spec in args.models:
            model_spec(spec, args.batch)
        return compare_models(args.models, args.batch, args.steps, args.repeats, args.backend)
    B, T = args.batch, args.seq
    print(f"training step, B={B} T={T} V={V}, RMSprop + clipping; characters per second. torch: a plain "
          f"PyTorch program; torch*: the same with glibc's malloc set up as longmem sets it up ({TUNED_TEXT})")
    print(f"{'H':>5} {'longmem':>10} {'torch':>10} {'ratio':>6} {'torch*':>10} {'ratio*':>6} {'compile s':>10} "
          f"{'longmem, both dropouts 0.3':>27}")
    for H in args.hidden:
        peers = {"longmem": Peer("longmem", H, B, T, "--backend", args.backend),
                 "torch": Peer("torch", H, B, T), "torch*": Peer("torch", H, B, T, env=TUNED),
                 "dropout": Peer("longmem-dropout", H, B, T, "--backend", args.backend)}
        seconds = time_alternately(peers, args.steps, args.repeats)
        ours, peer, tuned, masked = (B * T / seconds[k] for k in ("longmem", "torch", "torch*", "dropout"))
        print(f"{H:>5} {ours:>10.0f} {peer:>10.0f} {ours / peer:>6.2f} {tuned:>10.0f} {ours / tuned:>6.2f} "
              f"{float(peers['longmem'].info):>10.1f} {masked:>27.0f}")
        threads = peers["torch"].info
        for each in peers.values():
            each.close()
    print(f"(longmem backend {args.backend}; torch {threads} threads)")
    if args.no_end_to_end:
        return
    print(f"\nlongmem train end to end (dropout {DROPOUT}, weight drop {DROPOUT}, B=128, T=64) against plain PyTorch, "
          f"steps {args.short}..{args.long}, median of {args.rounds} alternating rounds; characters per second")
    print(f"{'H':>5} {'longmem':>10} {'torch':>10} {'ratio':>6} {'torch*':>10} {'ratio*':>6}")
    for H in args.hidden:
        speeds = end_to_end(H, args.rounds, args.short, args.long)
        ours = speeds["longmem"]
        print(f"{H:>5} {ours:>10.0f} {speeds['torch']:>10.0f} {ours / speeds['torch']:>6.2f} "
              f"{speeds['torch*']:>10.0f} {ours / speeds['torch*']:>6.2f}")

if __name__ == "__main__":
    main()
