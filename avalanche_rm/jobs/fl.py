"""The federated job: hybrid-chip clients learn digits together, one client asks to be forgotten."""
from __future__ import annotations

import logging
from functools import partial

import torch

from ..unlearning import accuracy_of, mia
from ..flower import (ADAPTER, AdapterFedAvg, adapter_model, FederatedForgetRequest, InProcessGrid, adapter_record,
                      make_client_app, make_server_app, owner_token, run_federation)
from ..flower.digits_fl import base_fn, data_fn
from ..hardware import get_preset
from ..report import plots


def run_fl(preset: str = "paper-180nm", seed: int = 0, clients: int = 5, rounds: int = 5, forget_client: int = 2,
           forget_round: int = 3, local_epochs: int = 2, ray: bool = False) -> tuple[dict, dict]:
    """Returns ``(report, plots)``. ``ray=True`` runs Flower's Ray simulation engine instead of the in-process grid."""
    if clients < 2:
        raise ValueError(f"clients must be >= 2, got {clients!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    if not 0 <= forget_client < clients:
        raise ValueError(f"forget_client must lie in 0..{clients - 1}, got {forget_client!r}")
    if not 1 <= forget_round <= rounds:
        raise ValueError(f"forget_round must lie in 1..{rounds}, got {forget_round!r}")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    hw = get_preset(preset)
    bfn, dfn = partial(base_fn, seed), partial(data_fn, seed=seed)
    client_app = make_client_app(bfn, dfn, hw, rank=4, alpha=8.0, local_epochs=local_epochs, base_seed=seed)
    sched = {forget_round: [FederatedForgetRequest(forget_client, owner_token("federation-secret", forget_client))]}
    ref = adapter_model(bfn, hw, rank=4, alpha=8.0)
    if ray:
        from flwr.simulation import run_simulation

        box = {}
        server = make_server_app(bfn, hw, num_rounds=rounds, forget_schedule=sched,
                                 on_result=lambda r: box.setdefault("res", r))
        run_simulation(server_app=server, client_app=client_app, num_supernodes=clients,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
        if "res" not in box:
            raise RuntimeError("the Ray simulation ended without a result (see Flower's log above)")
        res = box["res"]
    else:
        grid = InProcessGrid(client_app, clients)
        strat = AdapterFedAvg(min_train_nodes=clients, min_evaluate_nodes=clients, min_available_nodes=clients)
        res = run_federation(grid, strat, adapter_record(ref), rounds, sched)
    ref.program(seed=999)
    ref.load_adapter_state_dict(ADAPTER, res.arrays.to_torch_state_dict())
    gone = dfn(forget_client, clients)
    kept = [dfn(p, clients) for p in range(clients) if p != forget_client]
    xr, yr = torch.cat([d.x for d in kept]), torch.cat([d.y for d in kept])
    xt, yt = torch.cat([d.x_test for d in kept + [gone]]), torch.cat([d.y_test for d in kept + [gone]])
    attack = mia(ref, (gone.x, gone.y), (xr, yr), (xt, yt), seed=seed)
    full_bytes = sum(t.numel() * t.element_size() for t in bfn().state_dict().values())
    rows = [{"round": h["round"], "clients": h["clients"], "eval_accuracy": h["eval"].get("accuracy", float("nan")),
             "bytes_up": h["bytes_sent"], "adapter_bytes_per_client": h["train"].get("adapter-bytes", 0.0),
             "full_model_bytes_per_client": full_bytes, "client_pulses": h["train"].get("pulses", 0.0),
             "client_energy_pj": h["train"].get("energy-pj", 0.0), "failures": h["failures"]} for h in res.history]
    forget_rows = [{"forgotten_client": forget_client, "round": forget_round,
                    "acc_on_forgotten_client_data": accuracy_of(ref, gone.x, gone.y),
                    "acc_on_retained_clients_data": accuracy_of(ref, xr, yr), "test_acc": accuracy_of(ref, xt, yt),
                    "mia_loss_auc": attack["mia_loss_auc"], "mia_svc_auc": attack["mia_svc_auc"],
                    "honoured": len(res.audit), "refused": len(res.refused)}]
    report = {"command": "fl", "version": "0.1.0", "preset": hw.name, "preset_source": hw.source, "seed": seed,
              "data": "scikit-learn load_digits (real, bundled); public 30 % pre-trains the base, one owner per client",
              "engine": "flower ray simulation" if ray else "in-process grid (same ClientApp/ServerApp code)",
              "tables": {"rounds": rows, "forget request": forget_rows}, "audit": res.audit}
    figs = {"accuracy_per_round": plots.accuracy_per_experience({"global adapter": [r["eval_accuracy"] for r in rows]},
                                                                "federated accuracy per round")}
    return report, figs
