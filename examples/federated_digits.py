"""Five hybrid-chip clients learn digits together; client 2 asks to be forgotten after round 3.

Run: .venv/bin/python examples/federated_digits.py [--rounds 5]
Data: scikit-learn's bundled digits (real): a public 30 % pre-trains the base
that every chip programs (each with its own variability); the rest is split
among five owners, one per client. The rounds run on the in-process grid;
the same ClientApp and ServerApp run on Flower's engines through
``flwr run`` (examples/flower_app) or ``flwr.simulation.run_simulation``.
"""
from __future__ import annotations

import argparse
import logging

import torch

from avalanche_rm.evaluation import accuracy_of, mia
from avalanche_rm.flower import (ADAPTER, AdapterFedAvg, FederatedForgetRequest, InProcessGrid, adapter_record,
                                 make_client_app, owner_token, run_federation)
from avalanche_rm.flower.digits_fl import base_fn, data_fn
from avalanche_rm.hardware import get_preset
from avalanche_rm.nn import convert_to_hybrid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--forget-client", type=int, default=2)
    ap.add_argument("--forget-round", type=int, default=3)
    args = ap.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    hw = get_preset("paper-180nm")
    app = make_client_app(base_fn, data_fn, hw, rank=4, alpha=8.0, local_epochs=2)
    grid = InProcessGrid(app, args.clients)
    strat = AdapterFedAvg(min_train_nodes=args.clients, min_evaluate_nodes=args.clients,
                          min_available_nodes=args.clients)
    ref = convert_to_hybrid(base_fn(), hw)
    ref.add_adapter(ADAPTER, rank=4, alpha=8.0, seed=0, bias=True)
    full_bytes = sum(t.numel() * t.element_size() for t in base_fn().state_dict().values())
    sched = {args.forget_round: [FederatedForgetRequest(args.forget_client,
                                                        owner_token("federation-secret", args.forget_client))]}
    res = run_federation(grid, strat, adapter_record(ref), args.rounds, sched)

    # verification on a reference chip (seed 999) carrying the final global adapter
    ref.program(seed=999)
    ref.load_adapter_state_dict(ADAPTER, res.arrays.to_torch_state_dict())
    gone = data_fn(args.forget_client, args.clients)
    kept = [data_fn(p, args.clients) for p in range(args.clients) if p != args.forget_client]
    xr, yr = torch.cat([d.x for d in kept]), torch.cat([d.y for d in kept])
    xt, yt = torch.cat([d.x_test for d in kept + [gone]]), torch.cat([d.y_test for d in kept + [gone]])
    attack = mia(ref, (gone.x, gone.y), (xr, yr), (xt, yt))

    print("data: scikit-learn digits (real); preset paper-180nm; in-process grid\n")
    print(f"{'round':>5s} {'clients':>7s} {'eval acc':>9s} {'bytes up':>9s} {'client pulses':>13s}")
    for h in res.history:
        print(f"{h['round']:5d} {h['clients']:7d} {100 * h['eval'].get('accuracy', float('nan')):8.2f}% "
              f"{h['bytes_sent']:9d} {h['train'].get('pulses', 0):13.0f}")
    per_client = res.history[0]["train"]["adapter-bytes"]
    print(f"\nupload per client per round: adapter {per_client:.0f} B vs full model {full_bytes} B "
          f"({full_bytes / per_client:.1f}x less)")
    print(f"forget requests: honoured {res.audit}; refused {res.refused}")
    print(f"after forgetting client {args.forget_client}: its training data acc {100 * accuracy_of(ref, gone.x, gone.y):.2f}%, "
          f"retained clients' training data {100 * accuracy_of(ref, xr, yr):.2f}%, test {100 * accuracy_of(ref, xt, yt):.2f}%, "
          f"MIA loss AUC {attack['mia_loss_auc']:.3f}, SVC AUC {attack['mia_svc_auc']:.3f}")


if __name__ == "__main__":
    main()
