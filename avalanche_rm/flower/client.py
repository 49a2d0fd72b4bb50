"""ClientApp pieces: each client is one simulated hybrid chip that trains LoRA adapters only.

All chips carry the same pre-trained base, but each programs it with its own
device variability (seed ``base_seed + partition-id``), so their analogue
weights differ the way real chips do. The programmed chip, the local adapter,
the cost ledger and the forgotten sample ids live in ``Context.state`` (never
in Python globals, which Ray shares between virtual nodes). Replies carry only
adapter tensors, ``num-examples`` and the ledger deltas of the round.

With ``shards > 0`` a client trains one adapter per shard of its data (by a hash
of the sample id) from the round's global adapter and replies with their
size-weighted average (:class:`~avalanche_rm.unlearning.sisa.ShardedAdapters`):
a sample-level forget request with method ``"exact"`` then retrains only the
affected shards from the same starting point, seeds and read-noise stream,
which gives exactly the contribution the client would have sent this round had
it never held those samples. Every training run draws its read noise and
shuffling from seeds fixed by (client, round), so the server can replay earlier
rounds without the forgotten data (``config["replay"]``, charged to ledger
phase ``unlearn``) and get the federation that never had them.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from logging import INFO
from typing import Callable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log
from torch import nn

from ..costs.fields import REPLY_KEYS, reply_metrics
from ..hardware.array import sub_seed
from ..hardware.config import HardwareConfig
from ..nn.model import HybridModel, convert_to_hybrid
from ..training import train_classifier
from ..unlearning import DataRegistry, ForgetRefused, KeyDirectory, ShardedAdapters, run_approximate
from . import forget as fforget
from ..validation import check_int

ADAPTER = "fl"

# Deserialised chips, keyed by (app, run, node) and checked against the version stored in Context.state:
# a memo of the state, never a substitute for it (Ray actors serve several nodes; the key keeps them apart).
_CHIPS: dict[tuple[str, int, int], tuple[int, HybridModel]] = {}

__all__ = ["ADAPTER", "ClientData", "adapter_model", "adapter_record", "make_client_app"]


@dataclass
class ClientData:
    """One client's local data (``ids`` are stable sample ids used by forget requests)."""

    x: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


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


def round_seed(base_seed: int, partition_id: int, server_round: int, purpose: str) -> int:
    """The seed of one client's draws in one round: a replayed round draws exactly what the original did."""
    return sub_seed(base_seed, "client", int(partition_id), int(server_round), purpose)


def make_client_app(base_fn: Callable[[], nn.Module], data_fn: Callable[[int, int], ClientData],
                    hardware: HardwareConfig, *, rank: int = 4, alpha: float = 8.0, local_epochs: int = 2,
                    lr: float = 1e-2, batch_size: int = 32, base_seed: int = 0, trust: KeyDirectory | None = None,
                    shards: int = 0, unlearn_epochs: int = 16, cache_data: bool = False,
                    calibration_fn: Callable[[], torch.Tensor] | None = None,
                    fail_partitions: tuple[int, ...] = ()) -> ClientApp:
    """Build the ClientApp.

    ``base_fn()`` returns the pre-trained software base (same on every client);
    ``data_fn(partition_id, num_partitions)`` returns that client's
    :class:`ClientData`. ``calibration_fn()`` returns public inputs to calibrate
    each chip's ADCs after programming. ``shards > 0`` trains sharded adapters
    (exact sample-level unlearning); ``cache_data`` keeps the client's training
    data in ``Context.state`` between rounds (forget requests purge it there).
    ``fail_partitions`` makes those clients raise during training (robustness tests).
    ``trust`` is required: the :class:`~avalanche_rm.unlearning.KeyDirectory`
    naming the federation (the audience of its requests) with each owner's
    public key (owner id = partition id); a client honours only requests its
    owner signed, each once.
    """
    if not isinstance(trust, KeyDirectory):
        raise ValueError("make_client_app needs trust=KeyDirectory(<federation name>) holding each data owner's "
                         "public key (owner id = partition id): without it a client cannot tell its owner's forget "
                         f"requests from anyone else's, and it does not start (got trust={trust!r})")
    if not trust.owners and not trust.controllers:
        raise ValueError(f"the key directory for {trust.audience!r} holds no public key: add the owners' keys "
                         "(directory.add_owner(partition_id, key.public_key))")
    check_int(shards, "shards", 0)
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
            model.program(seed=base_seed + pid, calibration_data=calibration_fn() if calibration_fn else None)
        return model, pid

    def base_version(model: HybridModel) -> str:
        return ",".join(f"{int(layer.array.chip_seed)}:{int(layer.array.drift_calls)}:"
                        f"{int(layer.array.adc_calibrated)}" for layer in model.hybrid_layers())

    def save(ctx: Context, model: HybridModel) -> None:
        sd = model.state_dict()
        adapter = {k: v.contiguous() for k, v in sd.items() if ".lora_" in k}
        # the analogue part changes only when cells are written, age or get calibrated: store it again only then
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

    def local(ctx: Context, pid: int) -> ClientData:
        """This client's data without what it has forgotten (from the state cache when ``cache_data``)."""
        if cache_data and "data" in ctx.state.array_records:
            t = ctx.state.array_records["data"].to_torch_state_dict()
            d = ClientData(t["x"], t["y"], t["ids"], t["x_test"], t["y_test"])
        else:
            d = data_fn(pid, int(ctx.node_config["num-partitions"]))
        keep = ~torch.isin(d.ids, forgotten(ctx))
        d = ClientData(d.x[keep], d.y[keep], d.ids[keep], d.x_test, d.y_test)
        if cache_data:
            ctx.state["data"] = ArrayRecord({"x": d.x.contiguous(), "y": d.y, "ids": d.ids,
                                             "x_test": d.x_test.contiguous(), "y_test": d.y_test})
        return d

    def delta(before: dict, model: HybridModel) -> dict[str, float]:
        now = _ledger_totals(model)
        return {k: float(now[k] - before.get(k, 0.0)) for k in REPLY_KEYS}

    def registry_of(d: ClientData, pid: int) -> DataRegistry:
        reg = DataRegistry()
        reg.add(d.x, d.y, d.ids, torch.full_like(d.ids, pid))
        return reg

    def sharded(model: HybridModel, reg: DataRegistry, epochs: int) -> ShardedAdapters:
        return ShardedAdapters(model, reg, n_shards=shards, n_slices=1, rank=rank, alpha=alpha, lr=lr, epochs=epochs,
                               batch_size=batch_size, seed=base_seed, mask_classes=False, shared_adapter=ADAPTER)

    def store_shards(ctx: Context, start: dict, eng: ShardedAdapters, rnd: int, epochs: int) -> None:
        for k in [k for k in ctx.state.array_records if k.startswith("shard-")]:
            del ctx.state[k]
        ctx.state["round-start"] = ArrayRecord({k: v.contiguous() for k, v in start.items()})
        for key, st in eng.shards.items():
            ctx.state[f"shard-{key}"] = ArrayRecord({k: v.contiguous() for k, v in st.checkpoints[-1].items()})
        ctx.state["shard-round"] = ConfigRecord({"round": rnd, "epochs": epochs})

    def stored_shards(ctx: Context, model: HybridModel, d: ClientData, pid: int) -> tuple[ShardedAdapters, dict, int]:
        info = ctx.state.config_records["shard-round"]
        rnd, epochs = int(info["round"]), int(info["epochs"])
        start = ctx.state.array_records["round-start"].to_torch_state_dict()
        finals = {int(k.split("-")[1]): ctx.state.array_records[k].to_torch_state_dict()
                  for k in ctx.state.array_records if k.startswith("shard-")}
        eng = sharded(model, registry_of(d, pid), epochs)
        eng.restore_round(start, (pid, rnd), d.ids, finals)
        return eng, start, rnd

    @app.train()
    def train(msg: Message, ctx: Context) -> Message:
        model, pid = load(ctx)
        if pid in fail_partitions:
            raise RuntimeError(f"client {pid} failed during training")
        before = _ledger_totals(model)
        start = msg.content["arrays"].to_torch_state_dict()
        model.load_adapter_state_dict(ADAPTER, start)
        cfg = msg.content["config"] if "config" in msg.content.config_records else {}
        rnd = int(cfg.get("server-round", 0))
        epochs = int(cfg.get("local-epochs", local_epochs))
        # a replayed round (the server rebuilding the federation without forgotten data) is unlearning work
        phase = "unlearn" if int(cfg.get("replay", 0)) else "train"
        d = local(ctx, pid)
        if "first-round" not in ctx.state.config_records:
            ctx.state["first-round"] = ConfigRecord({"round": rnd})
        with model.ledger.phase(phase):
            if shards:
                eng = sharded(model, registry_of(d, pid), epochs)
                eng.begin_round(start, (pid, rnd))
                eng.learn(d.ids)
                _, n = eng.average()
                store_shards(ctx, start, eng, rnd, epochs)
                loss = 0.0
            else:
                seed = round_seed(base_seed, pid, rnd, "train")
                with torch.random.fork_rng(devices=[]), model.fork_read_noise(seed):
                    torch.manual_seed(seed)
                    losses = train_classifier(model, d.x, d.y, model.adapter_parameters([ADAPTER]), epochs=epochs,
                                              lr=lr, batch_size=batch_size, seed=seed, progress=False)
                n, loss = len(d.y), float(losses[-1]) if losses else 0.0
        save(ctx, model)
        arrays = adapter_record(model)
        costs = delta(before, model)
        metrics = MetricRecord({"num-examples": int(n), "train-loss": loss, **reply_metrics(costs),
                                "bytes-sent": int(arrays.count_bytes()),
                                "adapter-bytes": int(sum(v.numel() * v.element_size()
                                                         for v in arrays.to_torch_state_dict().values()))})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, ctx: Context) -> Message:
        model, pid = load(ctx)
        model.load_adapter_state_dict(ADAPTER, msg.content["arrays"].to_torch_state_dict())
        d = local(ctx, pid)
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
        """Honour a forget request signed by this client's data owner (once), else refuse with nothing changed."""
        pid = int(ctx.node_config["partition-id"])

        def refuse(reason: str) -> Message:
            return Message(RecordDict(fforget.refused(reason)), reply_to=msg)

        cfg = msg.content["config"] if "config" in msg.content.config_records else {}
        try:
            signed = fforget.parse_signed(cfg)
        except ValueError as e:
            return refuse(str(e))
        core = fforget.client_core(trust, fforget.load_store(ctx.state))
        try:
            request, _ = core.check(signed)  # signature, audience, freshness, never used: before anything
        except ForgetRefused as e:
            return refuse(str(e))
        kinds = ("drop", "objective") + (("sisa",) if shards else ())
        default = fforget.DROP if request.kind == "owner" else fforget.DEFAULT_SAMPLE_METHOD
        if request.method == fforget.EXACT and not shards:
            return refuse("exact unlearning needs a client with sharded adapters (make_client_app(shards=...))")
        try:
            method, _ = core.choose(request, default, None, kinds)
        except ForgetRefused as e:
            return refuse(str(e))
        if method.kind == "sisa" and "shard-round" not in ctx.state.config_records:
            return refuse("exact unlearning retrains this client's last round, and it has not trained yet")
        model, _ = load(ctx)
        before_cost = _ledger_totals(model)
        d = local(ctx, pid)
        fforget.learn_local(core, d, pid)
        try:
            core.resolve(signed)
        except ForgetRefused as e:
            return refuse(str(e))
        if "arrays" in msg.content.array_records:
            model.load_adapter_state_dict(ADAPTER, msg.content["arrays"].to_torch_state_dict())
        replay = bool(int(cfg.get("replay", 0)))
        first = int(ctx.state.config_records["first-round"]["round"]) if "first-round" in ctx.state.config_records \
            else 0

        def apply(ids: torch.Tensor, req, method, options) -> dict:
            if method.kind == "drop":
                return {"action": "client leaves; the server drops its contribution", "first_round": first}
            if method.kind == "sisa":
                eng, start, rnd = stored_shards(ctx, model, d, pid)
                detail = eng.forget(ids)
                eng.average()
                store_shards(ctx, start, eng, rnd, eng.epochs)
                out = {"method": method.name, **detail, "round": rnd, "first_round": first}
                if rnd > first and not replay:
                    # only this round's contribution is retrained: earlier rounds' global adapters still carry the data
                    out["guarantee"] = "approximate"
                return out
            reg = core.registry
            fg, rt = reg.split(ids)
            return run_approximate(model, model.adapter_parameters([ADAPTER]), method.name, options, fg, rt,
                                   epochs=unlearn_epochs, lr=lr, batch_size=None,
                                   n_classes=int(torch.cat([d.y, d.y_test]).max()) + 1, classes=None,
                                   test=(d.x_test, d.y_test), seed=base_seed + pid)

        def purge_state(ids: torch.Tensor) -> int:
            # every later round, evaluation and cache skips them; the cache itself is rewritten without them
            ctx.state["forgotten"] = ArrayRecord({"ids": torch.cat([forgotten(ctx), ids])})
            if cache_data and "data" in ctx.state.array_records:
                local(ctx, pid)
            return int(len(ids))

        record = core.honour(signed, model=model, ledger=model.ledger, apply=apply, default_method=default,
                             kinds=kinds, purge=[("client_state", purge_state)], who=f"client {pid}")
        fforget.save_store(ctx.state, core.store)  # the replay guard outlives the request
        save(ctx, model)
        # Flower's own logger: on the deployment engine this line lands in the SuperNode's log, on the chip that
        # did the work (the record itself goes back to the server's audit log)
        log(INFO, "avalanche-rm: forget request honoured on partition %d (node %d): kind %s, method %s, %d samples",
            pid, int(ctx.node_id), request.kind, record["method"], int(record["n_samples"]))
        costs = delta(before_cost, model)
        content = {"metrics": MetricRecord({"refused": 0, "num-examples": int(len(core.registry)),
                                            "forgotten": int(record["n_samples"]), **reply_metrics(costs)}),
                   "audit": fforget.audit_record_json(record)}
        if request.kind == "samples":
            content["arrays"] = adapter_record(model)
        return Message(RecordDict(content), reply_to=msg)

    return app
