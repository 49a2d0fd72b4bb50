"""The federated job: hybrid-chip clients learn digits together; owners ask to be forgotten.

After ``forget_round`` three requests arrive: one owner asks for its whole
client to be forgotten (the server drops its contribution), and two owners ask
for some of their samples to be forgotten, one honoured by exact retraining of
the client's affected adapter shards, one by an approximate method. Every
request's outcome is a line of the federation audit log (JSON lines).
"""
from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import torch

from ..costs.fields import from_reply
from ..flower import (ADAPTER, EXACT, AdapterFedAvg, FederatedForgetRequest, InProcessGrid, adapter_model,
                      adapter_record, audit_line, make_client_app, make_server_app, run_federation)
from ..flower.digits_fl import base_fn, calibration_fn, data_fn
from ..hardware import get_preset
from ..report import hardware_report, plots
from ..unlearning import AuditKey, accuracy_of, format_auc, generate_keys, mia

#: the federation's name: every owner's request is signed for it (a request for another federation is refused)
FEDERATION = "avalanche-rm fl digits"


def run_fl(preset: str = "paper-180nm", seed: int = 0, clients: int = 5, rounds: int = 5, forget_client: int = 2,
           forget_round: int = 3, local_epochs: int = 2, ray: bool = False, shards: int = 3,
           sample_methods: tuple[str, str] = (EXACT, "neg_ce"), samples_per_request: int = 10,
           method_options: dict | None = None, replay: bool = True, audit_path: str | Path | None = None,
           audit_key: AuditKey | None = None,
           device: str = "cpu") -> tuple[dict, dict]:
    """Returns ``(report, plots)``. ``ray=True`` runs Flower's Ray simulation engine instead of the in-process grid.

    ``sample_methods``: the methods of the two sample-level requests (``"exact"``
    needs ``shards > 0``), sent to the two clients after ``forget_client``;
    ``method_options`` go with the approximate ones. ``replay``: exact requests
    whose data reached earlier rounds replay those rounds (else they are
    recorded as approximate). Each owner gets a fresh signing key (the clients
    hold the public halves) and signs its own request; ``audit_path`` (the
    federation's log) needs the controller's ``audit_key``.
    """
    if clients < 3:
        raise ValueError(f"clients must be >= 3 (one leaves, two forget samples), got {clients!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    if not 0 <= forget_client < clients:
        raise ValueError(f"forget_client must lie in 0..{clients - 1}, got {forget_client!r}")
    if not 1 <= forget_round <= rounds:
        raise ValueError(f"forget_round must lie in 1..{rounds}, got {forget_round!r}")
    if EXACT in sample_methods and shards < 1:
        raise ValueError(f"method {EXACT!r} needs sharded client adapters (shards >= 1), got shards={shards!r}")
    if audit_path is not None and audit_key is None:
        raise ValueError(f"the federation audit log {str(audit_path)!r} needs the controller's audit_key")
    if str(device) != "cpu":
        raise ValueError(f"the federated job runs its simulated chips on the CPU (clients are processes or "
                         f"in-process nodes without a device option); got device {device!r}")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    hw = get_preset(preset)
    bfn, dfn = partial(base_fn, seed), partial(data_fn, seed=seed)
    trust, owner_keys = generate_keys(FEDERATION, owners=range(clients))
    client_app = make_client_app(bfn, dfn, hw, rank=4, alpha=8.0, local_epochs=local_epochs, base_seed=seed,
                                 shards=shards, calibration_fn=partial(calibration_fn, seed), trust=trust)
    requests = [FederatedForgetRequest.client(owner_keys[forget_client], forget_client, FEDERATION)]
    for k, method in enumerate(sample_methods):
        pid = (forget_client + 1 + k) % clients
        ids = dfn(pid, clients).ids
        pick = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed + pid))[:samples_per_request]]
        requests.append(FederatedForgetRequest.samples(owner_keys[pid], pid, sorted(pick.tolist()), FEDERATION,
                                                       method=method,
                                                       options=method_options if method != EXACT else None))
    sched = {forget_round: requests}
    ref = adapter_model(bfn, hw, rank=4, alpha=8.0)
    if ray:
        from flwr.simulation import run_simulation

        box = {}
        server = make_server_app(bfn, hw, num_rounds=rounds, forget_schedule=sched, audit_path=audit_path,
                                 audit_key=audit_key, on_result=lambda r: box.setdefault("res", r), replay=replay)
        run_simulation(server_app=server, client_app=client_app, num_supernodes=clients,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
        if "res" not in box:
            raise RuntimeError("the Ray simulation ended without a result (see Flower's log above)")
        res = box["res"]
    else:
        grid = InProcessGrid(client_app, clients)
        strat = AdapterFedAvg(min_train_nodes=clients, min_evaluate_nodes=clients, min_available_nodes=clients)
        res = run_federation(grid, strat, adapter_record(ref), rounds, sched, audit_path=audit_path,
                             audit_key=audit_key, replay=replay)
    # the global adapter is evaluated on a chip the server programs itself (its own variability)
    ref.program(seed=999, calibration_data=calibration_fn(seed))
    ref.load_adapter_state_dict(ADAPTER, res.arrays.to_torch_state_dict())
    gone = dfn(forget_client, clients)
    kept = [dfn(p, clients) for p in range(clients) if p != forget_client]
    xr, yr = torch.cat([d.x for d in kept]), torch.cat([d.y for d in kept])
    xt, yt = torch.cat([d.x_test for d in kept + [gone]]), torch.cat([d.y_test for d in kept + [gone]])
    attack = mia(ref, (gone.x, gone.y), (xr, yr), (xt, yt), seed=seed)
    full_bytes = sum(t.numel() * t.element_size() for t in bfn().state_dict().values())
    rows = [{"round": h["round"], "clients": h["clients"], "eval_accuracy": h["eval"].get("accuracy", float("nan")),
             "bytes_up": h["bytes_sent"], "adapter_bytes_per_client": h["train"].get("adapter-bytes", 0.0),
             "full_model_bytes_per_client": full_bytes,
             **{f"client_{k}": v for k, v in from_reply(h["train"]).items()}, "failures": h["failures"]}
            for h in res.history]
    forget_rows = [{"forgotten_client": forget_client, "round": forget_round,
                    "acc_on_forgotten_client_data": accuracy_of(ref, gone.x, gone.y),
                    "acc_on_retained_clients_data": accuracy_of(ref, xr, yr), "test_acc": accuracy_of(ref, xt, yt),
                    "mia_loss_auc": format_auc(attack, "loss"), "mia_svc_auc": format_auc(attack, "svc"),
                    "honoured": len(res.audit), "refused": len(res.refused)}]
    sample_rows = []
    for e in res.audit:
        if e["kind"] != "samples":
            continue
        rec = e.get("client_record", {})
        b, a = rec.get("metrics_before", {}), rec.get("metrics_after", {})
        sample_rows.append({"client": e["partition_id"], "method": e["method"], "samples": e["n_samples"],
                            "forget_acc_before": b.get("forget_acc"), "forget_acc_after": a.get("forget_acc"),
                            "retain_acc_after": a.get("retain_acc"), "test_acc_after": a.get("test_acc"),
                            "client_energy_uj": e["client_energy_pj"] / 1e6, "client_pulses": e["client_pulses"],
                            "affected": json.dumps(rec.get("affected", {}))})
    inf = ref.inference_cost(xt)  # one chip with the final global adapter, per sample
    infer_rows = [{"model": "a chip with the global adapter", "energy_pj": inf["energy_pj"],
                   "latency_ns": inf["latency_ns"]}]
    log_lines = [audit_line(e) for e in sorted(res.audit + res.refused, key=lambda e: (e["round"], e["partition_id"]))]
    report = hardware_report(
        "fl", hw, seed=seed,
        data="scikit-learn load_digits (real, bundled); public 30 % pre-trains the base, one owner per client",
        engine="flower ray simulation" if ray else "in-process grid (same ClientApp/ServerApp code)",
        shards_per_client=shards,
        tables={"rounds": rows, "forget request": forget_rows, "sample forget requests": sample_rows,
                "inference per sample": infer_rows},
        audit=res.audit, audit_log=log_lines)
    figs = {"accuracy_per_round": plots.accuracy_per_experience({"global adapter": [r["eval_accuracy"] for r in rows]},
                                                                "federated accuracy per round", axis="round")}
    return report, figs
