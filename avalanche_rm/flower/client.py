"""ClientApp pieces: each client is one simulated hybrid chip that trains LoRA adapters only.

All chips carry the same pre-trained base, but each programs it with its own
device variability (seed ``base_seed + partition-id``), so their analogue
weights differ the way real chips do. The programmed chip, the local adapter,
the cost ledger and the list of forgotten samples live in ``Context.state``
(never in Python globals, which Ray shares between virtual nodes). Replies
carry only adapter tensors, ``num-examples`` and the ledger deltas of the round.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Callable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from ..hardware.config import HardwareConfig
from ..nn.model import HybridModel, convert_to_hybrid
from ..strategies.approx_unlearning import unlearn_loop
from ..training import train_classifier

ADAPTER = "fl"

# Deserialised chips, keyed by (app, run, node) and checked against the version stored in Context.state:
# a memo of the state, never a substitute for it (Ray actors serve several nodes; the key keeps them apart).
_CHIPS: dict[tuple[str, int, int], tuple[int, HybridModel]] = {}


@dataclass
class ClientData:
    """One client's local data (``ids`` are stable sample ids used by forget requests)."""

    x: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def owner_token(secret: str, partition_id: int) -> str:
    """The token that proves a forget request comes from the owner of ``partition_id``'s data."""
    return hmac.new(secret.encode(), f"partition-{partition_id}".encode(), hashlib.sha256).hexdigest()


def adapter_record(model: HybridModel) -> ArrayRecord:
    return ArrayRecord({k: v.contiguous() for k, v in model.adapter_state_dict(ADAPTER).items()})


def adapter_model(base_fn: Callable[[], nn.Module], hardware: HardwareConfig, rank: int = 4, alpha: float = 8.0,
                  seed: int = 0) -> HybridModel:
    """The (unprogrammed) hybrid model with the federated adapter every client and the server share."""
    model = convert_to_hybrid(base_fn(), hardware)
    model.add_adapter(ADAPTER, rank=rank, alpha=alpha, seed=seed, bias=True)
    return model


def _ledger_totals(model: HybridModel) -> dict[str, float]:
    return model.ledger.total().as_dict()


def make_client_app(base_fn: Callable[[], nn.Module], data_fn: Callable[[int, int], ClientData],
                    hardware: HardwareConfig, *, rank: int = 4, alpha: float = 8.0, local_epochs: int = 2,
                    lr: float = 1e-2, batch_size: int = 32, base_seed: int = 0, secret: str = "federation-secret",
                    fail_partitions: tuple[int, ...] = ()) -> ClientApp:
    """Build the ClientApp. ``base_fn()`` returns the pre-trained software base (same on every client);
    ``data_fn(partition_id, num_partitions)`` returns that client's :class:`ClientData`.
    ``fail_partitions`` makes those clients raise during training (robustness tests).
    """
    app = ClientApp()
    app_key = uuid.uuid4().hex  # two ClientApps in one process never share memo entries

    def load(ctx: Context) -> tuple[HybridModel, int]:
        pid = int(ctx.node_config["partition-id"])
        version = int(ctx.state.config_records["chip-version"]["v"]) if "chip-version" in ctx.state.config_records else -1
        # taken out while in use: a handler that fails halfway cannot leave a half-updated chip behind
        memo = _CHIPS.pop((app_key, ctx.run_id, ctx.node_id), None)
        if memo is not None and memo[0] == version >= 0:
            return memo[1], pid
        model = adapter_model(base_fn, hardware, rank, alpha, base_seed)
        if "chip" in ctx.state.array_records:
            sd = ctx.state.array_records["chip"].to_torch_state_dict()
            sd.update(ctx.state.array_records["adapter"].to_torch_state_dict())
            model.load_state_dict(sd)
            model.ledger.load_state_dict(json.loads(ctx.state.config_records["ledger"]["json"]))
        else:
            # first contact: deploy the base on this client's own chip (its own variability)
            model.program(seed=base_seed + pid)
        return model, pid

    def base_version(model: HybridModel) -> str:
        return ",".join(f"{int(layer.chip_seed)}:{int(layer.drift_calls)}" for layer in model.hybrid_layers())

    def save(ctx: Context, model: HybridModel) -> None:
        sd = model.state_dict()
        adapter = {k: v.contiguous() for k, v in sd.items() if ".lora_" in k}
        # the analogue part changes only when cells are written or age: store it again only then
        bv = base_version(model)
        if "chip" not in ctx.state.array_records or ctx.state.config_records["base-version"]["v"] != bv:
            ctx.state["chip"] = ArrayRecord({k: v.contiguous() for k, v in sd.items() if ".lora_" not in k})
            ctx.state["base-version"] = ConfigRecord({"v": bv})
        ctx.state["adapter"] = ArrayRecord(adapter)
        ctx.state["ledger"] = ConfigRecord({"json": json.dumps(model.ledger.state_dict())})
        version = int(ctx.state.config_records["chip-version"]["v"]) + 1 if "chip-version" in ctx.state.config_records else 0
        ctx.state["chip-version"] = ConfigRecord({"v": version})
        _CHIPS[(app_key, ctx.run_id, ctx.node_id)] = (version, model)

    def forgotten(ctx: Context) -> torch.Tensor:
        if "forgotten" in ctx.state.array_records:
            return ctx.state.array_records["forgotten"].to_torch_state_dict()["ids"]
        return torch.zeros(0, dtype=torch.long)

    def local(ctx: Context, pid: int) -> tuple[ClientData, torch.Tensor]:
        d = data_fn(pid, int(ctx.node_config["num-partitions"]))
        keep = ~torch.isin(d.ids, forgotten(ctx))
        return d, keep

    def delta(before: dict, model: HybridModel) -> dict[str, float]:
        now = _ledger_totals(model)
        return {k: float(now[k] - before.get(k, 0.0)) for k in ("energy_pj", "pulses", "cells_programmed")}

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        model, pid = load(ctx)
        if pid in fail_partitions:
            raise RuntimeError(f"client {pid} failed during training")
        before = _ledger_totals(model)
        model.load_adapter_state_dict(ADAPTER, msg.content["arrays"].to_torch_state_dict())
        cfg = msg.content["config"] if "config" in msg.content.config_records else {}
        d, keep = local(ctx, pid)
        params = model.adapter_parameters([ADAPTER])
        n = sum(p.numel() for p in params)
        losses = train_classifier(model, d.x[keep], d.y[keep], params, epochs=int(cfg.get("local-epochs", local_epochs)),
                                  lr=lr, batch_size=batch_size, seed=base_seed + pid + 7 * int(cfg.get("server-round", 0)),
                                  progress=False, on_step=lambda: model.record_update(n, 8.0))
        save(ctx, model)
        arrays = adapter_record(model)
        costs = delta(before, model)
        metrics = MetricRecord({"num-examples": int(keep.sum()), "train-loss": float(losses[-1]) if losses else 0.0,
                                "energy-pj": costs["energy_pj"], "pulses": costs["pulses"],
                                "cells-programmed": costs["cells_programmed"], "bytes-sent": int(arrays.count_bytes()),
                                "adapter-bytes": int(sum(v.numel() * v.element_size()
                                                         for v in arrays.to_torch_state_dict().values()))})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, ctx: Context) -> Message:
        model, pid = load(ctx)
        model.load_adapter_state_dict(ADAPTER, msg.content["arrays"].to_torch_state_dict())
        d = data_fn(pid, int(ctx.node_config["num-partitions"]))
        with torch.no_grad():
            model.eval()
            out = model(d.x_test)
            loss = float(nn.functional.cross_entropy(out, d.y_test))
            acc = float((out.argmax(1) == d.y_test).float().mean())
        save(ctx, model)
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": len(d.y_test), "accuracy": acc,
                                                            "loss": loss})}), reply_to=msg)

    @app.query("info")
    def info(msg: Message, ctx: Context) -> Message:
        return Message(RecordDict({"info": ConfigRecord({"partition-id": int(ctx.node_config["partition-id"])})}),
                       reply_to=msg)

    @app.train("forget")
    def forget(msg: Message, ctx: Context) -> Message:
        """Honour a forget request from this client's data owner (token checked), else refuse unchanged."""
        pid = int(ctx.node_config["partition-id"])
        cfg = msg.content["config"]
        if not hmac.compare_digest(str(cfg.get("token", "")), owner_token(secret, pid)):
            return Message(RecordDict({"metrics": MetricRecord({"refused": 1, "num-examples": 0})}), reply_to=msg)
        model, _ = load(ctx)
        before = _ledger_totals(model)
        kind = str(cfg.get("kind", ""))
        d, keep = local(ctx, pid)
        if kind == "client":
            ids = d.ids[keep]
        elif kind == "samples":
            ids = torch.tensor(list(cfg.get("sample-ids", [])), dtype=torch.long)
            unknown = ~torch.isin(ids, d.ids[keep])
            if len(ids) == 0 or bool(unknown.any()):
                return Message(RecordDict({"metrics": MetricRecord({"refused": 1, "num-examples": 0})}), reply_to=msg)
        else:
            return Message(RecordDict({"metrics": MetricRecord({"refused": 1, "num-examples": 0})}), reply_to=msg)
        m = torch.isin(d.ids, ids)
        if kind == "samples":
            # approximate, adapter-only unlearning of the named samples on this chip
            model.load_adapter_state_dict(ADAPTER, msg.content["arrays"].to_torch_state_dict())
            params = model.adapter_parameters([ADAPTER])
            n = sum(p.numel() for p in params)
            with model.ledger.phase("unlearn"):
                unlearn_loop(model, params, "neg_ce", (d.x[m], d.y[m]), (d.x[keep & ~m], d.y[keep & ~m]),
                             epochs=16, lr=lr, batch_size=None, stop_forget_acc=0.1,
                             after_step=lambda opt: model.record_update(n, 8.0))
        state_ids = torch.cat([forgotten(ctx), ids])
        ctx.state["forgotten"] = ArrayRecord({"ids": state_ids})
        save(ctx, model)
        costs = delta(before, model)
        content = {"metrics": MetricRecord({"refused": 0, "num-examples": int((keep & ~m).sum()),
                                            "forgotten": int(len(ids)), "energy-pj": costs["energy_pj"],
                                            "pulses": costs["pulses"]})}
        if kind == "samples":
            content["arrays"] = adapter_record(model)
        return Message(RecordDict(content), reply_to=msg)

    return app
