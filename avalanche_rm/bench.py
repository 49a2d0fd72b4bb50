"""Side-by-side speed and memory figures: ``python -m avalanche_rm.bench``.

Everything is measured in one run on this machine and printed as ratios
against plain torch, so the numbers do not depend on how fast the host is.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from .hardware import get_preset, list_presets, write_verify
from .nn import convert_to_hybrid


def _median_time(fn, repeats: int, inner: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) / inner)
    return statistics.median(times)


def _interleaved(*fns, repeats: int = 7, inner: int = 10) -> tuple[float, ...]:
    """Median times of the callables, alternated so that machine load hits them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t.append(_median_time(fn, 1, inner))
    return tuple(statistics.median(t) for t in times)


def module_bytes(m: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 8 * 8, 10))


def _tiled_matmul(hyb: nn.Module, grouped_tiles: bool = True):
    """The same network with each hybrid layer reduced to its per-tile matmuls and the digital sum of the tiles.

    This is the floor any crossbar simulator with per-tile ADCs pays: the
    partial sums of every input tile exist separately before they are added.
    They are computed the fastest way torch offers here: on a CPU with oneDNN,
    one grouped 1x1 convolution per layer (:func:`fused.tile_partials`, what the
    fused read uses), else ``bmm`` (``grouped_tiles=False`` forces ``bmm``, what
    the eager read uses).
    A convolution's input vectors are its receptive fields, gathered into rows
    (im2col) as any simulator that gives each field its own DAC scale must
    (aihwkit's convolutions unfold too), where plain torch runs a direct
    convolution; the gather here is the layer's own
    (``HybridConv2d._gather_fields``) without the DAC scaling and rounding.
    """
    from .hardware import fused
    from .hardware.crossbar import input_pad
    from .nn.layers import HybridConv2d

    def tiled(layer, x):
        if isinstance(layer, HybridConv2d) and layer.dilation == (1, 1):
            ho, wo = layer._out_hw(x.shape[2], x.shape[3])
            pad = input_pad(layer.hardware.crossbar, layer.grid)
            buf, _ = layer._gather_fields(layer._padded(x), pad)
            y = tiled_vectors(layer, buf, padded=bool(pad))
            return y.view(x.shape[0], ho, wo, -1).permute(0, 3, 1, 2)
        if isinstance(layer, HybridConv2d):
            return None
        return tiled_vectors(layer, x)

    def tiled_vectors(layer, x, padded: bool = False):
        p, _ = layer.array.prepared()
        t = layer.grid.n_in_tiles
        if t == 1 or p.w.dim() == 2:
            w = p.w.reshape(-1, p.w.shape[-1])[: x.shape[1]]
            return fused.tile_partials(x, weights[layer], 1)[0] if grouped else x @ w
        pad = 0 if padded else layer.grid.in_padded - layer.grid.in_features
        xp = torch.nn.functional.pad(x, (0, pad)) if pad else x
        if grouped:
            return fused.tile_partials(xp, weights[layer], t).sum(0)
        return torch.bmm(xp.view(x.shape[0], t, -1).transpose(0, 1), p.w).sum(0)

    layers = [m for m in hyb.base_model if hasattr(m, "array")]
    grouped = grouped_tiles and bool(layers) and fused.grouped_tiles(layers[0].array.g_us.device)
    weights = {m: fused.conv_weight(m.array.prepared()[0].w) for m in layers} if grouped else {}

    def run(x):
        h = x
        for m in hyb.base_model:
            if hasattr(m, "array"):
                h = tiled(m, h)
                if h is None:
                    return None
            else:
                h = m(h)
        return h
    return run


def held_out_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


#: (label, model factory, input shape): the bench models, then a shape the fused path was not tuned on
FORWARD_MODELS = (("MLP 512-512-512-10, batch 256", mlp, (256, 512)),
                  ("CNN 2 conv + 1 fc, 32x32x3, batch 64", small_cnn, (64, 3, 32, 32)),
                  ("held out: MLP 784-1024-1024-10, batch 128", held_out_mlp, (128, 784)))
NOISE_COLUMNS = ("noise (table)", "noise (exact)", "noise (counter)", "no read noise")


def bench_forward(preset: str, device: torch.device, fused_read: bool = False, models=FORWARD_MODELS,
                  samplers: tuple[str, ...] = ("table", "exact", "counter"), repeats: int = 7,
                  ) -> list[tuple[str, float, dict[str, float]]]:
    """Per model: plain ms and hybrid / plain ratios for each read-noise setting (and the tiled-matmul floor).

    ``fused_read``: take the compiled read path (:mod:`avalanche_rm.hardware.fused`); its first call per
    shape (the compilation) happens before timing and is reported by :func:`fused.compile_seconds`.
    ``repeats``: interleaved timings per figure (their median is reported).
    """
    from .hardware import fused

    was = fused.fused_enabled()
    fused.set_fused(fused_read)
    rows = []
    try:
        for label, make, shape in models:
            torch.manual_seed(0)
            plain = make().to(device).eval()
            x = torch.randn(shape).to(device)
            hyb = convert_to_hybrid(plain, get_preset(preset)).to(device)
            hyb.program(seed=0, calibration_data=x)
            hyb.eval()
            ratios = {}
            with torch.no_grad():
                floor = _tiled_matmul(hyb)
                if floor(x) is not None:  # dilated convolutions: no floor
                    tp, tf = _interleaved(lambda: plain(x), lambda: floor(x), repeats=repeats)
                    ratios["tiled matmul only"] = tf / tp
                for mode in samplers:
                    if mode == "counter" and not fused_read:
                        continue  # eager counter draws are a reference, not a way to run (see noise_source)
                    hyb.set_noise_sampler(mode)
                    tp, th = _interleaved(lambda: plain(x), lambda: hyb(x), repeats=repeats)
                    ratios[f"noise ({mode})"] = th / tp
                hyb.set_analog_noise(False)
                tp, th = _interleaved(lambda: plain(x), lambda: hyb(x), repeats=repeats)
                ratios["no read noise"] = th / tp
            rows.append((label, tp * 1e3, ratios))
    finally:
        fused.set_fused(was)
    return rows


def bench_gemm_backends(device: torch.device, batch: int = 256, features: int = 512, tiles: int = 4,
                        repeats: int = 7) -> dict[str, float] | None:
    """Milliseconds for the same products by the two routes torch offers on a CPU, or None without oneDNN.

    Plain torch's ``nn.Linear`` goes through the BLAS (MKL); the fused read's per-tile products go through
    oneDNN as one grouped 1x1 convolution (:func:`fused.tile_partials`). Which is faster depends on the CPU:
    this line says how much of a fused ratio comes from the route rather than from less work.
    """
    from .hardware import fused

    if not fused.grouped_tiles(device):
        return None
    torch.manual_seed(0)
    x = torch.randn(batch, features, device=device).round()
    w = torch.randn(tiles, features // tiles, features, device=device)
    w_conv = fused.conv_weight(w)
    lin = torch.randn(features, features, device=device)
    with torch.no_grad():
        t_lin, t_bmm, t_conv = _interleaved(
            lambda: torch.nn.functional.linear(x, lin),
            lambda: torch.bmm(x.view(batch, tiles, -1).transpose(0, 1), w),
            lambda: fused.tile_partials(x, w_conv, tiles), repeats=repeats)
    return {"linear (BLAS)": 1e3 * t_lin, "tile bmm (BLAS)": 1e3 * t_bmm, "tile grouped conv (oneDNN)": 1e3 * t_conv}


def bench_programming(n_cells: int, device: torch.device, exact_for: tuple[str, ...] = ("paper-180nm",)
                      ) -> list[tuple[str, str, float, float, float]]:
    """(preset, sampler, Mcells/s, pulses per cell, fraction in window): every preset with the default table
    sampler, and the presets in ``exact_for`` with torch's generator too (same targets, same seed)."""
    rows = []
    for name in list_presets():
        d = get_preset(name).device
        for sampler in ("table", "exact") if name in exact_for else ("table",):
            gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(0)
            target = (d.g_min_us + torch.rand(n_cells, generator=gen, device=gen.device) * d.g_range_us).to(device)
            start = torch.full_like(target, d.g_min_us)
            write_verify(d, start, target, gen, sampler=sampler)  # warm-up: allocations and the shared table
            dts = []
            for _ in range(3):
                t = time.perf_counter()
                rep = write_verify(d, start, target, gen, sampler=sampler).report
                if device.type == "cuda":
                    torch.cuda.synchronize()
                dts.append(time.perf_counter() - t)
            rows.append((name, sampler, n_cells / statistics.median(dts) / 1e6, rep.pulses_per_cell, rep.success_rate))
    return rows


def bench_memory(preset: str) -> list[tuple[str, float]]:
    rows = []
    for label, make in (("MLP 512-512-512-10", mlp), ("small CNN", small_cnn)):
        for p in (preset, "rram-generic"):
            plain = make()
            hyb = convert_to_hybrid(plain, get_preset(p))
            rows.append((f"{label} on {p} ({get_preset(p).crossbar.mapping})", module_bytes(hyb) / module_bytes(plain)))
    return rows


class _SoftwareLoRA(nn.Module):
    """A frozen ``nn.Linear`` plus a float32 LoRA branch with its own bias (the federated adapter's shape, PEFT's
    layer): the hybrid chip's training arithmetic without a chip, i.e. the floor of a federated hybrid round."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features).uniform_(-base.in_features ** -0.5,
                                                                                 base.in_features ** -0.5))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        self.lora_bias = nn.Parameter(torch.zeros(base.out_features))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling + self.lora_bias


def _software_lora(base: nn.Module, rank: int = 4, alpha: float = 8.0) -> nn.Module:
    for i, m in enumerate(base):
        if isinstance(m, nn.Linear):
            base[i] = _SoftwareLoRA(m, rank, alpha)
    return base


def _fl_apps():
    """(ClientApps, initial arrays) per kind of client on the digits partitions: plain torch, software LoRA, hybrid.

    All train one local epoch (Adam, lr 1e-2, batch 32) on the same partitions; the plain
    clients train the whole software model and send its state dict, the
    software-LoRA clients train a rank-4 adapter on the frozen software model
    (no chip: the floor of the hybrid design's round) and the hybrid clients train
    the same adapter on their programmed chip; both send the adapter.
    """
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from .flower import adapter_model, adapter_record, make_client_app
    from .flower.digits_fl import base_fn, calibration_fn, data_fn
    from .training import train_classifier
    from .unlearning import generate_keys

    import logging

    logging.getLogger("flwr").setLevel(logging.WARNING)  # after flwr's import, which sets its own level
    hw = get_preset("paper-180nm")

    def software_app(make, trained) -> ClientApp:
        app = ClientApp()

        def load(msg) -> nn.Module:
            m = make()
            m.load_state_dict(msg.content["arrays"].to_torch_state_dict(), strict=False)
            return m

        @app.train()
        def train(msg, ctx):
            pid = int(ctx.node_config["partition-id"])
            m = load(msg)
            d = data_fn(pid, int(ctx.node_config["num-partitions"]))
            train_classifier(m, d.x, d.y, trained(m), epochs=1, batch_size=32, progress=False, seed=pid)
            sd = {k: v for k, v in m.state_dict().items() if k in msg.content["arrays"]}
            return Message(RecordDict({"arrays": ArrayRecord(sd), "metrics": MetricRecord({"num-examples": len(d.y)})}),
                           reply_to=msg)

        @app.evaluate()
        def evaluate(msg, ctx):
            d = data_fn(int(ctx.node_config["partition-id"]), int(ctx.node_config["num-partitions"]))
            m = load(msg)
            with torch.no_grad():
                acc = float((m(d.x_test).argmax(1) == d.y_test).float().mean())
            return Message(RecordDict({"metrics": MetricRecord({"num-examples": len(d.y_test), "accuracy": acc})}),
                           reply_to=msg)
        return app

    plain = software_app(base_fn, lambda m: m.parameters())
    lora = software_app(lambda: _software_lora(base_fn()), lambda m: [p for p in m.parameters() if p.requires_grad])
    lora_init = {k: v for k, v in _software_lora(base_fn()).state_dict().items() if ".lora_" in k}
    # the bench sends no forget request; the clients still need a key directory to start (one controller's key)
    trust, _ = generate_keys("avalanche-rm bench", controllers=["bench"])
    hybrid = make_client_app(base_fn, data_fn, hw, local_epochs=1, calibration_fn=calibration_fn, trust=trust)
    model = adapter_model(base_fn, hw, rank=4, alpha=8.0)
    return ({"plain torch": plain, "software LoRA": lora, "hybrid chips": hybrid},
            {"plain torch": ArrayRecord(base_fn().state_dict()), "software LoRA": ArrayRecord(lora_init),
             "hybrid chips": adapter_record(model)})


def bench_fl_round(num_clients: int = 5, repeats: int = 3) -> dict[str, float]:
    """Seconds per federated round (in-process grid) per kind of client (see :func:`_fl_apps`), alternated."""
    from .flower import AdapterFedAvg, InProcessGrid, run_federation

    apps, inits = _fl_apps()

    def one(app, init):
        grid = InProcessGrid(app, num_clients)
        strat = AdapterFedAvg(min_train_nodes=num_clients, min_evaluate_nodes=num_clients,
                              min_available_nodes=num_clients)
        run_federation(grid, strat, init, 1)  # first contact programs each chip: not part of a round
        return lambda: run_federation(grid, strat, init, 1)

    kinds = list(apps)
    return dict(zip(kinds, _interleaved(*(one(apps[k], inits[k]) for k in kinds), repeats=repeats, inner=1)))


class _c_stderr_silenced:
    """Send file descriptor 2 to /dev/null: the profiler's C++ side prints start/stop lines (and, without a
    GPU, a device-count error) that are not about this bench."""

    def __enter__(self):
        import os
        import sys

        sys.stderr.flush()
        self.saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        return self

    def __exit__(self, *exc) -> None:
        import os

        os.dup2(self.saved, 2)
        os.close(self.saved)


def bench_calls_per_step(fused_read: bool = False, batch: int = 32) -> dict[str, int]:
    """Torch operator calls per training step (forward, backward, Adam step) at the federated batch size.

    Counted by torch's profiler: aten operators not nested in another aten operator (a compiled graph's
    kernels are one call each, its extern matmuls one each). Plain torch trains the whole digits MLP; the
    hybrid chip trains one rank-4 adapter on it.
    """
    from torch.profiler import profile

    from .hardware import fused
    from .training import make_mlp

    torch.manual_seed(0)
    x, y = torch.rand(batch, 64), torch.randint(0, 10, (batch,))
    plain = make_mlp()
    hyb = convert_to_hybrid(make_mlp(), get_preset("paper-180nm"))
    hyb.program(seed=0, calibration_data=torch.rand(256, 64))
    hyb.add_adapter("a", rank=4, alpha=8.0)

    def count(model: nn.Module, params: list) -> int:
        opt = torch.optim.Adam(params, 1e-3)
        model.train()

        def step() -> None:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        step()
        step()  # warm: optimiser state exists, compiled graphs are built
        with _c_stderr_silenced(), profile() as prof:
            step()
        return sum(1 for e in prof.events() if e.name.startswith("aten::")
                   and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))

    was = fused.fused_enabled()
    out = {"plain torch": count(plain, list(plain.parameters()))}
    try:
        for on in (False, True) if fused_read else (False,):
            fused.set_fused(on)
            out["hybrid, fused read" if on else "hybrid, eager read"] = count(hyb, hyb.adapter_parameters())
    finally:
        fused.set_fused(was)
    return out


def _tree_rss_bytes() -> int:
    """Resident memory of this process and all its descendants (Ray's raylet, GCS and workers included)."""
    import psutil

    me = psutil.Process()
    total = 0
    for p in [me] + me.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _ray_federation_run(kind: str, num_clients: int, rounds: int) -> dict[str, float]:
    """One federation on Flower's simulation engine (in this process): round times and peak memory above idle."""
    import threading

    import psutil  # noqa: F401 - imported on the main thread, before the memory sampler's thread uses it
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from .flower import AdapterFedAvg, run_federation

    apps, inits = _fl_apps()
    client_app, init = apps[kind], inits[kind]
    times: list[float] = []
    clients: list[int] = []
    server = ServerApp()

    @server.main()
    def main(grid, context) -> None:
        n = num_clients  # the strategy waits until every SuperNode has registered
        strat = AdapterFedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
        for _ in range(rounds):
            t = time.perf_counter()
            res = run_federation(grid, strat, init, 1)
            times.append(time.perf_counter() - t)
            clients.append(int(res.history[-1]["clients"]))

    base = _tree_rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], _tree_rss_bytes())

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        run_simulation(server_app=server, client_app=client_app, num_supernodes=num_clients,
                       backend_config={"client_resources": {"num_cpus": 1},
                                       "init_args": {"include_dashboard": False, "log_to_driver": False}})
    finally:
        stop.set()
        th.join()
    if len(times) < rounds or min(clients) < num_clients:
        raise RuntimeError(f"bench_ray_federation: the {kind} federation ran {len(times)} of {rounds} rounds "
                           f"with {clients} of {num_clients} clients")
    return {"first round s": times[0], "round s": statistics.median(times[1:]) if rounds > 1 else times[0],
            "peak MiB": (peak[0] - base) / 2 ** 20, "memory per client MiB": (peak[0] - base) / num_clients / 2 ** 20}


def bench_ray_federation(num_clients: int = 100, rounds: int = 2) -> dict[str, dict[str, float]]:
    """A federation of ``num_clients`` on Flower's simulation engine (Ray), plain-torch clients vs hybrid chips.

    Each kind runs in a fresh Python process (so neither inherits the other's Ray or allocator state). Per
    kind: seconds of the first round (the chips are programmed on first contact), seconds per later round,
    and the peak resident memory of that process tree (driver, Ray's daemons and workers) above the tree's
    memory just before the federation started, in total and per client. Rounds train and evaluate every
    client.
    """
    import json
    import subprocess
    import sys

    out = {}
    for kind in ("plain torch", "hybrid chips"):
        code = (f"import json; from avalanche_rm.bench import _ray_federation_run; "
                f"print('RESULT', json.dumps(_ray_federation_run({kind!r}, {num_clients}, {rounds})))")
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"bench_ray_federation: the {kind} federation failed:\n{proc.stderr[-3000:]}")
        out[kind] = json.loads(line[len("RESULT "):])
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="paper-180nm")
    ap.add_argument("--cells", type=int, default=2_000_000, help="cells per programming benchmark")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ray-clients", type=int, default=100,
                    help="clients of the Flower simulation-engine (Ray) federation (0: skip it)")
    ap.add_argument("--repeats", type=int, default=7,
                    help="interleaved timings per forward figure, median reported (1: a quick look, noisy figures)")
    ap.add_argument("--no-fused", action="store_true",
                    help="skip the fused compiled read's forward table (and its compile time)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {dev}, preset {args.preset}\n")
    from .hardware import fused

    cols = NOISE_COLUMNS + ("tiled matmul only",)
    results = {}
    for fused_read in (False,) if args.no_fused else (False, True):
        path = "fused compiled read" if fused_read else "eager read (reference)"
        print(f"forward time, hybrid / plain torch, {path} (eval, no_grad; ledger on)")
        print(f"  {'model':<42s} {'plain ms':>8s} " + " ".join(f"{c:>17s}" for c in cols))
        before = fused.compile_seconds()
        rows = results[fused_read] = bench_forward(args.preset, dev, fused_read=fused_read, repeats=args.repeats)
        for label, tp, r in rows:
            cells = " ".join(f"{r[c]:16.2f}x" if c in r else f"{'-':>17s}" for c in cols)
            print(f"  {label:<42s} {tp:8.3f} {cells}")
        if fused_read:
            spent = {k: v for k, v in fused.compile_seconds().items() if k not in before}
            why = fused.fallback_reason()
            print(f"  compile time (first call per layer shape and noise input, paid once): "
                  f"{sum(spent.values()):.1f} s "
                  f"over {len(spent)} graphs" + (f"; FELL BACK TO EAGER: {why}" if why else ""))
        bench_mlp, held = rows[0][2], rows[-1][2]
        gaps = ", ".join(f"{c.split('(')[-1].rstrip(')')} {held[c] - bench_mlp[c]:+.2f}x" for c in NOISE_COLUMNS
                         if c in held and c in bench_mlp)
        print(f"  held-out MLP ratio minus bench MLP ratio: {gaps}\n")
    gemm = bench_gemm_backends(dev, repeats=args.repeats)
    if gemm is not None:
        print("the same 512x512 products at batch 256 (4 tiles for the tile routes), ms: "
              + ", ".join(f"{k} {v:.3f}" for k, v in gemm.items()) + "\n")
    print("write-verify programming throughput (cells start at g_min, uniform targets; default sampler: exact)")
    print(f"  {'preset':<14s} {'sampler':<8s} {'Mcells/s':>9s} {'pulses/cell':>12s} {'in window':>10s}")
    for name, sampler, mcps, ppc, ok in bench_programming(args.cells, dev):
        print(f"  {name:<14s} {sampler:<8s} {mcps:9.2f} {ppc:12.2f} {100 * ok:9.2f}%")
    print("\nmodule memory (parameters + buffers), hybrid / plain")
    for label, r in bench_memory(args.preset):
        print(f"  {label:<52s} {r:6.2f}x")
    fl = bench_fl_round()
    tp, tl, th = fl["plain torch"], fl["software LoRA"], fl["hybrid chips"]
    print(f"\nfederated round, 5 clients on digits (in-process grid): plain torch {tp:.3f} s, software LoRA "
          f"(no chip; the floor) {tl:.3f} s, hybrid chips {th:.3f} s; ratio {th / tp:.2f}x (floor {tl / tp:.2f}x)")
    calls = bench_calls_per_step(fused_read=not args.no_fused)
    print("\ncalls per training step (digits MLP, batch 32; aten operators, profiler): "
          + ", ".join(f"{k} {v}" for k, v in calls.items()))
    if args.ray_clients:
        r = bench_ray_federation(args.ray_clients)
        p, h = r["plain torch"], r["hybrid chips"]
        print(f"\nfederation of {args.ray_clients} clients on Flower's simulation engine (Ray), train + evaluate "
              f"per round:")
        for kind, v in r.items():
            print(f"  {kind:<13s} first round {v['first round s']:7.2f} s, later round {v['round s']:7.2f} s, "
                  f"peak memory above idle {v['peak MiB']:8.1f} MiB = {v['memory per client MiB']:6.2f} MiB per client "
                  f"(process tree: driver, Ray, its workers)")
        extra = (h["peak MiB"] - p["peak MiB"]) / args.ray_clients
        print(f"  ratios hybrid / plain: round time {h['round s'] / p['round s']:.2f}x, memory per client "
              f"{h['memory per client MiB'] / max(p['memory per client MiB'], 1e-9):.2f}x "
              f"({extra:+.2f} MiB per client above the plain federation)")


if __name__ == "__main__":
    main()
