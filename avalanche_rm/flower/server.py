"""ServerApp pieces: adapter-only FedAvg that can forget a client exactly, and the round loop.

``AdapterFedAvg`` keeps each client's latest adapter contribution, so dropping
a client recomputes the aggregate without it exactly (for the latest round;
earlier rounds' influence on the other clients' starting points remains, as in
every retrain-free federated scheme). Forget requests travel as ``train.forget``
messages carrying the owner's token; the client checks it, so a request from
anyone else is refused there and nothing changes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg


def _weighted_average(contribs: dict[int, tuple[ArrayRecord, int]]) -> ArrayRecord | None:
    if not contribs:
        return None
    total = sum(n for _, n in contribs.values())
    if total <= 0:
        return None
    out: dict[str, torch.Tensor] = {}
    for arrays, n in contribs.values():
        for k, v in arrays.to_torch_state_dict().items():
            out[k] = out.get(k, 0) + v.double() * (n / total)
    return ArrayRecord({k: v.float() for k, v in out.items()})


class AdapterFedAvg(FedAvg):
    """FedAvg over LoRA adapters that remembers per-client contributions for exact client removal."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.contributions: dict[int, tuple[ArrayRecord, int]] = {}
        self.excluded: set[int] = set()
        self.round_bytes: dict[int, int] = {}
        self.rejected: dict[int, list[tuple[int, str]]] = {}
        self._template: dict[str, tuple[int, ...]] | None = None

    def reply_problem(self, arrays: ArrayRecord, num_examples) -> str | None:
        """Why a client's reply cannot enter the aggregate (``None`` if it can).

        Keys and shapes must match the global adapter sent out, values must be
        finite and ``num-examples`` a non-negative int: one malformed or poisoned
        reply must not corrupt every client's next starting point.
        """
        if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 0:
            return f"num-examples must be a non-negative int, got {num_examples!r}"
        sd = arrays.to_torch_state_dict()
        if self._template is not None:
            if set(sd) != set(self._template):
                return f"adapter keys {sorted(sd)} != expected {sorted(self._template)}"
            for k, v in sd.items():
                if tuple(v.shape) != self._template[k]:
                    return f"adapter {k!r} has shape {tuple(v.shape)}, expected {self._template[k]}"
        for k, v in sd.items():
            if not v.is_floating_point() or not bool(torch.isfinite(v).all()):
                return f"adapter {k!r} is not a finite float tensor"
        return None

    def configure_train(self, server_round, arrays, config, grid):
        self._template = {k: tuple(v.shape) for k, v in arrays.to_torch_state_dict().items()}
        msgs = super().configure_train(server_round, arrays, config, grid)
        return [m for m in msgs if m.metadata.dst_node_id not in self.excluded]

    def configure_evaluate(self, server_round, arrays, config, grid):
        msgs = super().configure_evaluate(server_round, arrays, config, grid)
        return [m for m in msgs if m.metadata.dst_node_id not in self.excluded]

    def aggregate_train(self, server_round, replies):
        good = []
        for msg in replies:
            if msg.has_error() or "arrays" not in msg.content.array_records \
                    or "metrics" not in msg.content.metric_records:
                good.append(msg)  # Flower's own checks count and log these
                continue
            problem = self.reply_problem(msg.content["arrays"], msg.content["metrics"].get("num-examples"))
            if problem is None:
                good.append(msg)
            else:
                # dropped and recorded; the client's previous contribution (if any) stays
                self.rejected.setdefault(server_round, []).append((msg.metadata.src_node_id, problem))
        valid, _ = self._check_and_log_replies(good, is_train=True)
        sent = 0
        for msg in valid:
            nid = msg.metadata.src_node_id
            if nid in self.excluded:
                continue
            arrays = msg.content["arrays"]
            sent += int(arrays.count_bytes())
            self.contributions[nid] = (arrays, int(msg.content["metrics"]["num-examples"]))
        self.round_bytes[server_round] = sent
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key) if valid else None
        return _weighted_average(self.contributions), metrics

    def drop_client(self, node_id: int) -> ArrayRecord | None:
        """Forget a client: exclude it from later rounds and re-aggregate without its contribution."""
        self.excluded.add(node_id)
        self.contributions.pop(node_id, None)
        return _weighted_average(self.contributions)

    def replace_contribution(self, node_id: int, arrays: ArrayRecord, num_examples: int) -> ArrayRecord | None:
        self.contributions[node_id] = (arrays, num_examples)
        return _weighted_average(self.contributions)


@dataclass
class FederatedForgetRequest:
    """``kind="client"`` forgets a whole client; ``kind="samples"`` names sample ids on that client."""

    partition_id: int
    token: str
    kind: str = "client"
    sample_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("client", "samples"):
            raise ValueError(f"kind must be 'client' or 'samples', got {self.kind!r}")
        if isinstance(self.partition_id, bool) or not isinstance(self.partition_id, int) or self.partition_id < 0:
            raise ValueError(f"partition_id must be a non-negative int, got {self.partition_id!r}")
        if self.kind == "samples" and not self.sample_ids:
            raise ValueError("a samples request needs sample_ids")


@dataclass
class FederationResult:
    arrays: ArrayRecord | None
    history: list[dict] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    pending: list[FederatedForgetRequest] = field(default_factory=list)


def partition_map(grid: Grid) -> dict[int, int]:
    """partition-id -> node id, asked of the nodes (the server cannot see node_config)."""
    msgs = [Message(RecordDict(), nid, "query.info") for nid in grid.get_node_ids()]
    out = {}
    for rep in grid.send_and_receive(msgs):
        if not rep.has_error():
            out[int(rep.content["info"]["partition-id"])] = rep.metadata.src_node_id
    return out


def run_federation(grid: Grid, strategy: AdapterFedAvg, initial_arrays: ArrayRecord, num_rounds: int,
                   forget_schedule: dict[int, list[FederatedForgetRequest]] | None = None,
                   train_config: dict | None = None, queue_offline: bool = True) -> FederationResult:
    """The ServerApp loop: train/evaluate rounds, forget requests honoured after their scheduled round.

    A request for a client that is offline is kept in ``result.pending`` and
    retried after every later round (``queue_offline=True``), or refused at once.
    """
    if num_rounds < 1:
        raise ValueError(f"num_rounds must be >= 1, got {num_rounds!r}")
    arrays = initial_arrays
    res = FederationResult(arrays)
    forget_schedule = forget_schedule or {}
    for rnd in range(1, num_rounds + 1):
        replies = list(grid.send_and_receive(strategy.configure_train(rnd, arrays, ConfigRecord(dict(train_config or {})),
                                                                      grid)))
        agg, train_metrics = strategy.aggregate_train(rnd, replies)
        if agg is not None:
            arrays = agg
        ev = list(grid.send_and_receive(strategy.configure_evaluate(rnd, arrays, ConfigRecord({}), grid)))
        eval_metrics = strategy.aggregate_evaluate(rnd, ev) if ev else None
        res.history.append({"round": rnd, "train": dict(train_metrics or {}), "eval": dict(eval_metrics or {}),
                            "bytes_sent": strategy.round_bytes.get(rnd, 0),
                            "failures": sum(1 for r in replies if r.has_error()),
                            "clients": len(replies)})
        due, res.pending = res.pending + list(forget_schedule.get(rnd, [])), []
        for req in due:
            arrays = _honour(grid, strategy, arrays, req, rnd, res, queue_offline)
    res.arrays = arrays
    return res


def _honour(grid, strategy, arrays, req: FederatedForgetRequest, rnd: int, res: FederationResult,
            queue_offline: bool = True):
    nodes = partition_map(grid)
    node = nodes.get(req.partition_id)
    entry = {"round": rnd, "partition_id": req.partition_id, "kind": req.kind, "n_samples": len(req.sample_ids)}
    if node is None:
        if queue_offline:
            res.pending.append(req)
        else:
            res.refused.append({**entry, "reason": "client offline or unknown"})
        return arrays
    cfg = {"token": req.token, "kind": req.kind, "sample-ids": list(req.sample_ids)}
    t0 = time.perf_counter()
    reply = list(grid.send_and_receive([Message(RecordDict({"arrays": arrays, "config": ConfigRecord(cfg)}), node,
                                                "train.forget")]))
    if not reply or reply[0].has_error() or int(reply[0].content["metrics"]["refused"]):
        res.refused.append({**entry, "reason": "refused by the client (token or ids)"})
        return arrays
    m = reply[0].content["metrics"]
    if req.kind == "client":
        new = strategy.drop_client(node)
    else:
        new = strategy.replace_contribution(node, reply[0].content["arrays"], int(m["num-examples"]))
    res.audit.append({**entry, "node": node, "wall_time_s": time.perf_counter() - t0,
                      "client_energy_pj": float(m.get("energy-pj", 0.0)), "client_pulses": float(m.get("pulses", 0.0)),
                      "remaining_clients": len(strategy.contributions)})
    return new if new is not None else arrays


def make_server_app(base_fn, hardware, *, rank: int = 4, alpha: float = 8.0, num_rounds: int = 3,
                    forget_schedule: dict[int, list[FederatedForgetRequest]] | None = None, schedule_fn=None,
                    on_result=None):
    """A Flower ``ServerApp`` running :func:`run_federation` over adapter-only FedAvg.

    ``run_config`` (``[tool.flwr.app.config]`` under ``flwr run``) may set
    ``num-server-rounds``; ``schedule_fn(run_config)`` may build the forget
    schedule from it. ``on_result(result)`` receives the :class:`FederationResult`.
    """
    from flwr.app import Context
    from flwr.serverapp import ServerApp

    from .client import adapter_model, adapter_record

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        rounds = int(context.run_config.get("num-server-rounds", num_rounds))
        n = len(list(grid.get_node_ids()))
        model = adapter_model(base_fn, hardware, rank, alpha)
        strategy = AdapterFedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
        sched = schedule_fn(dict(context.run_config)) if schedule_fn is not None else forget_schedule
        result = run_federation(grid, strategy, adapter_record(model), rounds, sched)
        if on_result is not None:
            on_result(result)

    return app
