"""ServerApp pieces: adapter-only FedAvg that can forget a client or samples exactly, and the round loop.

``AdapterFedAvg`` keeps each client's latest adapter contribution, so dropping
a client recomputes the latest aggregate without it; and it keeps every
round's start (global adapter, configuration, contributions, participants), so
an exact request whose data contributed to earlier rounds can *replay* those
rounds without the data (:meth:`AdapterFedAvg.replay`): every client retrains
each round from the replayed global adapter with the seeds it used the first
time, and the federation ends exactly where one that never had the data would
(charged to the clients' ``unlearn`` phase). Without a replay (``replay=False``,
or a client that fails during it) such a request is recorded as approximate:
earlier rounds' global adapters, and so every client, still carry the data's
influence. Forget requests travel as ``train.forget``
messages carrying the owner's signed request; the server only carries it, the
client verifies it (signature, federation name, single use), so a request from
anyone else, or replayed, is refused there and nothing changes. As Flower strategies split
``configure_train``/``aggregate_train``, :class:`AdapterFedAvg` splits
``configure_forget`` (the message for the client) from ``aggregate_forget``
(drop or replace its contribution, and the federation's audit entry).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from ..costs.fields import REPLY_KEYS, from_reply
from ..unlearning import AuditKey, ChainedLog, get_method, weighted_average
from .forget import FederatedForgetRequest


def _weighted_average(contribs: dict[int, tuple[ArrayRecord, int]]) -> ArrayRecord | None:
    if not contribs or sum(n for _, n in contribs.values()) <= 0:
        return None
    # summed in node order, not in the order replies arrived (Flower samples nodes at random): the aggregate of
    # the same contributions is the same to the last bit, which a replayed federation relies on
    items = [contribs[nid] for nid in sorted(contribs)]
    return ArrayRecord(weighted_average([a.to_torch_state_dict() for a, _ in items], [n for _, n in items]))


class ReplayFailed(RuntimeError):
    """A client did not answer while earlier rounds were being replayed."""


class AdapterFedAvg(FedAvg):
    """FedAvg over LoRA adapters that remembers per-client contributions for exact client removal."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.contributions: dict[int, tuple[ArrayRecord, int]] = {}
        self.excluded: set[int] = set()
        self.round_bytes: dict[int, int] = {}
        self.rejected: dict[int, list[tuple[int, str]]] = {}
        self._template: dict[str, tuple[int, ...]] | None = None
        #: per round: the global adapter and config sent, the contributions before it, who contributed
        self.rounds: dict[int, dict] = {}
        #: the first round each node contributed to (its data's influence starts there)
        self.first_round: dict[int, int] = {}

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
        msgs = [m for m in msgs if m.metadata.dst_node_id not in self.excluded]
        self.rounds[server_round] = {"start": arrays, "config": dict(msgs[0].content["config"]) if msgs else {},
                                     "contributions": dict(self.contributions), "participants": []}
        return msgs

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
            self.first_round.setdefault(nid, server_round)
            if server_round in self.rounds:
                self.rounds[server_round]["participants"].append(nid)
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

    def replay(self, grid: Grid, first: int, last: int) -> tuple[ArrayRecord | None, dict]:
        """Re-run training rounds ``first..last`` as recorded, without excluded clients (and without the data
        clients have forgotten since): each round starts from the replayed global adapter, every recorded
        participant trains again with ``config["replay"] = 1`` and the aggregate follows the same rule.
        Returns the new global adapter and what the replay cost the clients; raises :class:`ReplayFailed`
        (nothing of the recorded history changed) when a participant does not answer."""
        if first not in self.rounds or any(r not in self.rounds for r in range(first, last + 1)):
            raise ReplayFailed(f"rounds {first}..{last} were not all recorded (recorded: {sorted(self.rounds)})")
        contributions = {n: c for n, c in self.rounds[first]["contributions"].items() if n not in self.excluded}
        arrays = self.rounds[first]["start"]
        new_rounds, cost = {}, {**dict.fromkeys(REPLY_KEYS, 0.0), "client_rounds": 0}
        for r in range(first, last + 1):
            rec = self.rounds[r]
            nodes = [n for n in rec["participants"] if n not in self.excluded]
            new_rounds[r] = {"start": arrays, "config": rec["config"], "contributions": dict(contributions),
                             "participants": nodes}
            cfg = ConfigRecord({**rec["config"], "server-round": r, "replay": 1})
            msgs = [Message(RecordDict({"arrays": arrays, "config": cfg}), n, "train") for n in nodes]
            for rep in grid.send_and_receive(msgs):
                nid = rep.metadata.src_node_id
                if rep.has_error() or "arrays" not in rep.content.array_records:
                    raise ReplayFailed(f"node {nid} failed in replayed round {r}: "
                                       f"{rep.error.reason if rep.has_error() else 'no adapter in the reply'}")
                m = rep.content["metrics"]
                problem = self.reply_problem(rep.content["arrays"], m.get("num-examples"))
                if problem is not None:
                    raise ReplayFailed(f"node {nid} sent a bad reply in replayed round {r}: {problem}")
                contributions[nid] = (rep.content["arrays"], int(m["num-examples"]))
                for k, v in from_reply(m).items():
                    cost[k] += v
                cost["client_rounds"] += 1
            agg = _weighted_average(contributions)
            arrays = agg if agg is not None else arrays
        self.rounds.update(new_rounds)
        self.contributions = contributions
        return arrays, {"rounds": [first, last], **cost}

    # ------------------------------------------------------------ forget requests
    def needs_replay(self, request: FederatedForgetRequest, node_id: int, server_round: int) -> bool:
        """Whether an exact request must replay earlier rounds: its data reached global adapters before this
        round's (the client contributed before ``server_round``)."""
        exact = get_method(request.method).guarantee != "approximate"
        return exact and self.first_round.get(node_id, server_round) < server_round

    def configure_forget(self, request: FederatedForgetRequest, node_id: int, arrays: ArrayRecord,
                         replay: bool = False) -> Message:
        """The ``train.forget`` message for the client that holds the data (with the global adapter);
        ``replay`` tells the client the server will replay earlier rounds without the data."""
        cfg = request.config()
        cfg["replay"] = int(replay)
        return Message(RecordDict({"arrays": arrays, "config": cfg}), node_id, "train.forget")

    def aggregate_forget(self, request: FederatedForgetRequest, node_id: int,
                         reply: Message | None) -> tuple[ArrayRecord | None, dict]:
        """Apply a client's forget reply: drop it (whole client) or replace its contribution (samples).

        Returns the new aggregate (``None`` if nothing changed) and the
        federation's audit entry (the client's record: ids, digest, metrics, cost).
        """
        entry = {"partition_id": request.partition_id, "node": node_id, "kind": request.kind,
                 "method": request.method, "request_id": request.request_id, "n_samples": 0}
        if reply is None or reply.has_error():
            return None, {**entry, "status": "failed",
                          "reason": reply.error.reason if reply is not None and reply.has_error() else "no reply"}
        metrics = reply.content["metrics"]
        if int(metrics["refused"]):
            reason = reply.content["reason"]["reason"] if "reason" in reply.content.config_records else "refused"
            return None, {**entry, "status": "refused", "reason": f"refused by the client: {reason}"}
        record = json.loads(reply.content["audit"]["json"]) if "audit" in reply.content.config_records else {}
        if request.kind == "client":
            new = self.drop_client(node_id)
        else:
            new = self.replace_contribution(node_id, reply.content["arrays"], int(metrics["num-examples"]))
        # the client's count of what it forgot (a whole client's request names no ids)
        entry["n_samples"] = int(record.get("n_samples", metrics.get("forgotten", 0)))
        costs = {f"client_{k}": v for k, v in from_reply(metrics).items()}
        return new, {**entry, "status": "honoured", **costs, "remaining_clients": len(self.contributions),
                     "client_record": record}


@dataclass
class FederationResult:
    arrays: ArrayRecord | None
    history: list[dict] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    pending: list[FederatedForgetRequest] = field(default_factory=list)


def federation_log(path: str | Path | None, key: "AuditKey | bytes | None") -> ChainedLog | None:
    """The federation's audit log: chained and MACed under the controller's key (see ``avalanche-rm audit verify``)."""
    if path is None:
        return None
    if key is None:
        raise ValueError(f"the federation audit log {str(path)!r} needs the data controller's audit key "
                         "(audit_key=AuditKey...): a log without a MAC key cannot prove it was not edited")
    return ChainedLog(path, key, "federation audit log")


def append_audit(log: ChainedLog | None, entry: dict) -> None:
    """One line of the federation audit log."""
    if log is not None:
        log.append(entry)


def audit_line(entry: dict) -> str:
    """One federation audit-log entry as a short JSON line (the client's before/after metrics included)."""
    rec = entry.get("client_record", {})
    short = {k: entry[k] for k in ("round", "partition_id", "kind", "method", "status", "guarantee", "n_samples")
             if k in entry}
    if "replay" in entry:
        rep = entry["replay"]
        short["replay"] = rep.get("rounds", rep)
        if "energy_pj" in rep:  # what rebuilding the federation without the data cost every client together
            short["replay_energy_uj"] = round(rep["energy_pj"] / 1e6, 2)
    if "reason" in entry:
        short["reason"] = entry["reason"]
    if rec:
        short["digest"] = rec.get("data_digest", "")[:16]
        for when in ("before", "after"):
            m = rec.get(f"metrics_{when}", {})
            short[when] = {k: (None if math.isnan(float(m[k])) else round(float(m[k]), 3))
                           for k in ("forget_acc", "retain_acc", "test_acc") if k in m}
        short["client_energy_uj"] = round(entry.get("client_energy_pj", 0.0) / 1e6, 2)
        short["client_pulses"] = int(entry.get("client_pulses", 0))
    return json.dumps(short)


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
                   train_config: dict | None = None, queue_offline: bool = True,
                   audit_path: str | Path | None = None, audit_key: "AuditKey | bytes | None" = None,
                   replay: bool = True) -> FederationResult:
    """The ServerApp loop: train/evaluate rounds, forget requests honoured after their scheduled round.

    A request for a client that is offline is kept in ``result.pending`` and
    retried after every later round (``queue_offline=True``), or refused at once.
    Exact requests (``"exact"``, ``"drop"``) whose data reached earlier rounds are
    made exact by one replay of those rounds after the round's requests
    (``replay=True``; see :meth:`AdapterFedAvg.replay`), else recorded as
    approximate. Every honoured or refused request is appended to the federation
    audit log (``audit_path``: chained JSON lines MACed under ``audit_key``, the
    controller's key) with its ``guarantee``.
    """
    if num_rounds < 1:
        raise ValueError(f"num_rounds must be >= 1, got {num_rounds!r}")
    log = federation_log(audit_path, audit_key)
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
        entries = []
        for req in due:
            arrays, entry = _honour(grid, strategy, arrays, req, rnd, res, queue_offline, replay)
            if entry is not None:
                entries.append(entry)
        arrays = _replay_for(grid, strategy, arrays, [e for e in entries if e.get("needs_replay")], rnd)
        for entry in entries:
            entry.pop("needs_replay", None)
            (res.audit if entry["status"] == "honoured" else res.refused).append(entry)
            append_audit(log, entry)
    res.arrays = arrays
    return res


def _honour(grid, strategy: AdapterFedAvg, arrays, req: FederatedForgetRequest, rnd: int, res: FederationResult,
            queue_offline: bool = True, replay: bool = True):
    """Send one request to its client and fold the reply in; returns the new global adapter and the audit entry
    (``None`` while the client is offline and the request waits)."""
    node = partition_map(grid).get(req.partition_id)
    if node is None:
        if queue_offline:
            res.pending.append(req)
            return arrays, None
        return arrays, {"round": rnd, "partition_id": req.partition_id, "kind": req.kind, "method": req.method,
                        "request_id": req.request_id, "status": "refused", "reason": "client offline or unknown"}
    t0 = time.perf_counter()
    needs = strategy.needs_replay(req, node, rnd)
    first = strategy.first_round.get(node, rnd)
    replies = list(grid.send_and_receive([strategy.configure_forget(req, node, arrays, replay=needs and replay)]))
    new, entry = strategy.aggregate_forget(req, node, replies[0] if replies else None)
    entry = {"round": rnd, **entry, "wall_time_s": time.perf_counter() - t0}
    if entry["status"] != "honoured":
        return arrays, entry
    guarantee = entry.get("client_record", {}).get("guarantee", get_method(req.method).guarantee)
    if needs and not replay:
        guarantee = "approximate"
        entry["why_approximate"] = (f"the data reached global adapters from round {first}; replay is off, so only "
                                    f"round {rnd}'s contribution changed")
    entry.update(guarantee=guarantee, first_round=first, needs_replay=needs and replay)
    return (new if new is not None else arrays), entry


def _replay_for(grid, strategy: AdapterFedAvg, arrays, entries: list[dict], rnd: int):
    """One replay from the earliest first round of ``entries`` through ``rnd`` (all their data gone at once)."""
    if not entries:
        return arrays
    first = min(e["first_round"] for e in entries)
    t0 = time.perf_counter()
    try:
        new, info = strategy.replay(grid, first, rnd)
    except ReplayFailed as e:
        for entry in entries:
            entry.update(guarantee="approximate", replay={"failed": str(e)},
                         why_approximate=f"the replay of rounds {first}..{rnd} failed")
        return arrays
    info["wall_time_s"] = time.perf_counter() - t0
    for entry in entries:
        entry["replay"] = info
    return new if new is not None else arrays


def make_server_app(base_fn, hardware, *, rank: int = 4, alpha: float = 8.0, num_rounds: int = 3,
                    forget_schedule: dict[int, list[FederatedForgetRequest]] | None = None, schedule_fn=None,
                    on_result=None, audit_path: str | Path | None = None, audit_key: "AuditKey | bytes | None" = None,
                    replay: bool = True):
    """A Flower ``ServerApp`` running :func:`run_federation` over adapter-only FedAvg.

    ``run_config`` (``[tool.flwr.app.config]`` under ``flwr run``) may set
    ``num-server-rounds``, ``replay`` and ``fraction-evaluate`` (as in Flower's app template: the
    share of clients that evaluate each round, 0 for none); ``schedule_fn(run_config)`` may build
    the forget schedule from it. ``on_result(result)`` receives the :class:`FederationResult`.
    An audit log (``audit_path``, or ``audit-path`` in the run config) needs the
    controller's ``audit_key``.
    """
    from flwr.app import Context
    from flwr.serverapp import ServerApp

    from .client import adapter_model, adapter_record

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        rounds = int(context.run_config.get("num-server-rounds", num_rounds))
        n = len(list(grid.get_node_ids()))
        fe = float(context.run_config.get("fraction-evaluate", 1.0))
        if not 0.0 <= fe <= 1.0:
            raise ValueError(f"fraction-evaluate must be in [0, 1], got {fe!r}")
        model = adapter_model(base_fn, hardware, rank, alpha)
        strategy = AdapterFedAvg(min_train_nodes=n, min_available_nodes=n, fraction_evaluate=fe,
                                 min_evaluate_nodes=max(1, int(n * fe)))
        sched = schedule_fn(dict(context.run_config)) if schedule_fn is not None else forget_schedule
        result = run_federation(grid, strategy, adapter_record(model), rounds, sched,
                                audit_path=context.run_config.get("audit-path", audit_path), audit_key=audit_key,
                                replay=bool(context.run_config.get("replay", replay)))
        if on_result is not None:
            on_result(result)

    return app
