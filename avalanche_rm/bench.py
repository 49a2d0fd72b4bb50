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


def _interleaved(fa, fb, repeats: int = 7, inner: int = 10) -> tuple[float, float]:
    """Median times of two callables, alternated so that machine load hits both alike."""
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_median_time(fa, 1, inner))
        tb.append(_median_time(fb, 1, inner))
    return statistics.median(ta), statistics.median(tb)


def module_bytes(m: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 8 * 8, 10))


def _tiled_matmul(hyb: nn.Module):
    """The same network with each hybrid layer reduced to its per-tile matmuls and the digital sum of the tiles.

    This is the floor any crossbar simulator with per-tile ADCs pays: the
    partial sums of every input tile exist separately before they are added.
    """
    from .nn.layers import HybridConv2d

    def tiled(layer, x):
        if isinstance(layer, HybridConv2d):
            return None
        p, _ = layer.array.prepared()
        t = layer.grid.n_in_tiles
        if t == 1 or p.w.dim() == 2:
            return x @ p.w.reshape(-1, p.w.shape[-1])[: x.shape[1]]
        pad = layer.grid.in_padded - layer.grid.in_features
        xp = torch.nn.functional.pad(x, (0, pad)) if pad else x
        return torch.bmm(xp.view(x.shape[0], t, -1).transpose(0, 1), p.w).sum(0)

    def run(x):
        h = x
        for m in hyb.base_model:
            if hasattr(m, "array"):
                out = tiled(m, h)
                if out is None:
                    return None
                h = out
            else:
                h = m(h)
        return h
    return run


def bench_forward(preset: str, device: torch.device) -> list[tuple[str, float, dict[str, float]]]:
    """Per model: plain ms and hybrid / plain ratios for each read-noise setting (and the tiled-matmul floor)."""
    rows = []
    for label, make, x in (("MLP 512-512-512-10, batch 256", mlp, torch.randn(256, 512)),
                           ("CNN 2 conv + 1 fc, 32x32x3, batch 64", small_cnn, torch.randn(64, 3, 32, 32))):
        torch.manual_seed(0)
        plain = make().to(device).eval()
        x = x.to(device)
        hyb = convert_to_hybrid(plain, get_preset(preset)).to(device)
        hyb.program(seed=0, calibration_data=x)
        hyb.eval()
        ratios = {}
        with torch.no_grad():
            floor = _tiled_matmul(hyb)
            if floor(x) is not None:
                tp, tf = _interleaved(lambda: plain(x), lambda: floor(x))
                ratios["tiled matmul only"] = tf / tp
            for mode in ("table", "exact"):
                hyb.set_noise_sampler(mode)
                tp, th = _interleaved(lambda: plain(x), lambda: hyb(x))
                ratios[f"noise ({mode})"] = th / tp
            hyb.set_analog_noise(False)
            tp, th = _interleaved(lambda: plain(x), lambda: hyb(x))
            ratios["no read noise"] = th / tp
        rows.append((label, tp * 1e3, ratios))
    return rows


def bench_programming(n_cells: int, device: torch.device) -> list[tuple[str, float, float, float]]:
    rows = []
    for name in list_presets():
        d = get_preset(name).device
        gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(0)
        target = (d.g_min_us + torch.rand(n_cells, generator=gen, device=gen.device) * d.g_range_us).to(device)
        start = torch.full_like(target, d.g_min_us)
        write_verify(d, start[:1000], target[:1000], gen)
        dts = []
        for _ in range(3):
            t = time.perf_counter()
            rep = write_verify(d, start, target, gen).report
            if device.type == "cuda":
                torch.cuda.synchronize()
            dts.append(time.perf_counter() - t)
        dt = statistics.median(dts)
        rows.append((name, n_cells / dt / 1e6, rep.pulses_per_cell, rep.success_rate))
    return rows


def bench_memory(preset: str) -> list[tuple[str, float]]:
    rows = []
    for label, make in (("MLP 512-512-512-10", mlp), ("small CNN", small_cnn)):
        for p in (preset, "rram-generic"):
            plain = make()
            hyb = convert_to_hybrid(plain, get_preset(p))
            rows.append((f"{label} on {p} ({get_preset(p).crossbar.mapping})", module_bytes(hyb) / module_bytes(plain)))
    return rows


def bench_fl_round(num_clients: int = 5, repeats: int = 3) -> tuple[float, float]:
    """Seconds per federated round (in-process grid): hybrid-chip clients vs plain-torch clients.

    Both train one local epoch on the same digits partitions; the plain clients
    train the whole software model and send its state dict, the hybrid clients
    train LoRA on their programmed chip and send the adapter.
    """
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from .flower import AdapterFedAvg, adapter_model, InProcessGrid, adapter_record, make_client_app, run_federation
    from .flower.digits_fl import base_fn, calibration_fn, data_fn
    from .training import train_classifier

    import logging

    logging.getLogger("flwr").setLevel(logging.WARNING)  # after flwr's import, which sets its own level
    hw = get_preset("paper-180nm")
    plain = ClientApp()

    @plain.train()
    def train(msg, ctx):
        pid = int(ctx.node_config["partition-id"])
        m = base_fn()
        m.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        d = data_fn(pid, int(ctx.node_config["num-partitions"]))
        train_classifier(m, d.x, d.y, m.parameters(), epochs=1, batch_size=32, progress=False, seed=pid)
        return Message(RecordDict({"arrays": ArrayRecord(m.state_dict()),
                                   "metrics": MetricRecord({"num-examples": len(d.y)})}), reply_to=msg)

    @plain.evaluate()
    def evaluate(msg, ctx):
        d = data_fn(int(ctx.node_config["partition-id"]), int(ctx.node_config["num-partitions"]))
        m = base_fn()
        m.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        with torch.no_grad():
            acc = float((m(d.x_test).argmax(1) == d.y_test).float().mean())
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": len(d.y_test), "accuracy": acc})}),
                       reply_to=msg)

    hybrid = make_client_app(base_fn, data_fn, hw, local_epochs=1, calibration_fn=calibration_fn)
    model = adapter_model(base_fn, hw, rank=4, alpha=8.0)

    def one(app, init):
        grid = InProcessGrid(app, num_clients)
        strat = AdapterFedAvg(min_train_nodes=num_clients, min_evaluate_nodes=num_clients,
                              min_available_nodes=num_clients)
        run_federation(grid, strat, init, 1)  # first contact programs each chip: not part of a round
        return lambda: run_federation(grid, strat, init, 1)

    rp, rh = one(plain, ArrayRecord(base_fn().state_dict())), one(hybrid, adapter_record(model))
    return _interleaved(rp, rh, repeats=repeats, inner=1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="paper-180nm")
    ap.add_argument("--cells", type=int, default=2_000_000, help="cells per programming benchmark")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {dev}, preset {args.preset}\n")
    print("forward time, hybrid / plain torch (eval, no_grad; ledger on)")
    cols = ("noise (table)", "noise (exact)", "no read noise", "tiled matmul only")
    print(f"  {'model':<38s} {'plain ms':>8s} " + " ".join(f"{c:>17s}" for c in cols))
    for label, tp, r in bench_forward(args.preset, dev):
        cells = " ".join(f"{r[c]:16.2f}x" if c in r else f"{'-':>17s}" for c in cols)
        print(f"  {label:<38s} {tp:8.3f} {cells}")
    print("\nwrite-verify programming throughput (cells start at g_min, uniform targets)")
    print(f"  {'preset':<14s} {'Mcells/s':>9s} {'pulses/cell':>12s} {'in window':>10s}")
    for name, mcps, ppc, ok in bench_programming(args.cells, dev):
        print(f"  {name:<14s} {mcps:9.2f} {ppc:12.2f} {100 * ok:9.2f}%")
    print("\nmodule memory (parameters + buffers), hybrid / plain")
    for label, r in bench_memory(args.preset):
        print(f"  {label:<52s} {r:6.2f}x")
    tp, th = bench_fl_round()
    print(f"\nfederated round, 5 clients on digits (in-process grid): plain torch {tp:.3f} s, "
          f"hybrid chips {th:.3f} s, ratio {th / tp:.2f}x")


if __name__ == "__main__":
    main()
