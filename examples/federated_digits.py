"""Five hybrid-chip clients learn digits together; after round 3 owners ask to be forgotten.

Run: .venv/bin/python examples/federated_digits.py [--rounds 5] [--clients 5] [--audit audit.jsonl]
(``avalanche-rm fl`` runs the same federation and adds the evaluation on a server chip).
Data: scikit-learn's bundled digits (real): a public 30 % pre-trains the base
that every chip programs with its own variability and calibrates its ADCs on;
the rest is split among the clients' owners. Each client trains 3 adapter
shards, so a sample-level request can be honoured exactly. After round 3:
client 2's owner asks for the whole client to be forgotten; client 3's owner
asks for 10 samples to be forgotten exactly; client 4's for 10 samples with the
``neg_ce`` objective. The rounds run on the in-process grid (Flower's Grid API,
the same ClientApp and ServerApp code that ``flwr run`` uses).
AVALANCHE_RM_QUICK=1 runs 2 rounds of 1 local epoch.
"""
from __future__ import annotations

import argparse
import os

from avalanche_rm.costs.fields import from_reply
from avalanche_rm.flower import (AdapterFedAvg, FederatedForgetRequest, InProcessGrid, adapter_model, adapter_record,
                                 audit_line, make_client_app, run_federation)
from avalanche_rm.flower.digits_fl import base_fn, calibration_fn, data_fn
from avalanche_rm.hardware import get_preset
from avalanche_rm.unlearning import AuditKey, generate_keys

FEDERATION = "example federated_digits"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--forget-round", type=int, default=3)
    ap.add_argument("--audit", default=None, help="federation audit log (chained JSON lines; its key goes to "
                                                  "AUDIT.key, check it with `avalanche-rm audit verify`)")
    a = ap.parse_args()
    epochs = 2
    if os.environ.get("AVALANCHE_RM_QUICK") == "1":
        a.rounds, a.forget_round, epochs = 2, 1, 1
    if a.clients < 5:
        ap.error(f"--clients must be >= 5 (clients 2, 3 and 4 make requests), got {a.clients}")
    hw = get_preset("paper-180nm")
    # every owner keeps its signing key; the clients hold only the public keys
    trust, keys = generate_keys(FEDERATION, owners=range(a.clients))
    app = make_client_app(base_fn, data_fn, hw, rank=4, alpha=8.0, local_epochs=epochs, shards=3,
                          calibration_fn=calibration_fn, trust=trust)

    def samples(pid: int) -> tuple[int, ...]:
        return tuple(data_fn(pid, a.clients).ids[:10].tolist())

    requests = [FederatedForgetRequest.client(keys[2], 2, FEDERATION),
                FederatedForgetRequest.samples(keys[3], 3, samples(3), FEDERATION, method="exact"),
                FederatedForgetRequest.samples(keys[4], 4, samples(4), FEDERATION, method="neg_ce")]
    audit_key = None
    if a.audit:
        audit_key = AuditKey.generate()
        audit_key.save(a.audit + ".key")
    strategy = AdapterFedAvg(min_train_nodes=a.clients, min_evaluate_nodes=a.clients, min_available_nodes=a.clients)
    start = adapter_record(adapter_model(base_fn, hw, rank=4, alpha=8.0))
    res = run_federation(InProcessGrid(app, a.clients), strategy, start, a.rounds, {a.forget_round: requests},
                         audit_path=a.audit, audit_key=audit_key)
    print("data: scikit-learn digits (real); in-process grid; preset paper-180nm\n")
    for h in res.history:
        print(f"round {h['round']}: {h['clients']} clients, eval accuracy {h['eval'].get('accuracy', float('nan')):.3f}, "
              f"adapter bytes received {h['bytes_sent']}, client energy {from_reply(h['train'])['energy_pj'] / 1e6:.1f} uJ")
    print("\nfederation audit log:")
    for entry in res.audit + res.refused:
        print(audit_line(entry))


if __name__ == "__main__":
    main()
