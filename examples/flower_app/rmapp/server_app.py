"""ServerApp: adapter-only FedAvg; after round ``forget-round`` the owner of partition ``forget-partition``
asks to be forgotten, and the owner of the next partition asks for ``forget-samples`` of its samples to be
forgotten with method ``sample-method`` (``exact``, or any registered objective; 0 samples: no such request).

The owners sign their requests; the server only carries them to the clients, which verify them. In this
demo the owners' keys sit in ``$RMAPP_KEYS`` (``owner-<id>.key``) so the server can play the owners; in a
federation each owner signs on its own machine and hands over the signed request (``SignedRequest.to_json``).
"""
import os
from pathlib import Path

from avalanche_rm.flower import FederatedForgetRequest, audit_line, make_server_app
from avalanche_rm.flower.digits_fl import base_fn, data_fn
from avalanche_rm.hardware import get_preset
from avalanche_rm.unlearning import KeyDirectory, SigningKey


def schedule(run_config: dict) -> dict:
    keys = Path(os.environ["RMAPP_KEYS"])
    federation = KeyDirectory.load(keys / "trust.json").audience
    rnd = int(run_config.get("forget-round", 2))
    pid = int(run_config.get("forget-partition", 1))
    n = int(run_config.get("num-partitions", 3))
    other = (pid + 1) % n
    k = int(run_config.get("forget-samples", 5))
    requests = [FederatedForgetRequest.client(SigningKey.load(keys / f"owner-{pid}.key"), pid, federation)]
    if k > 0:  # forget-samples = 0: only the client-level request
        ids = data_fn(other, n).ids[:k].tolist()
        requests.append(FederatedForgetRequest.samples(SigningKey.load(keys / f"owner-{other}.key"), other, ids,
                                                       federation, method=str(run_config.get("sample-method", "exact"))))
    return {rnd: requests}


def report(result) -> None:
    for h in result.history:
        print(f"round {h['round']}: clients {h['clients']}, eval accuracy {h['eval'].get('accuracy', float('nan')):.3f}, "
              f"adapter bytes received {h['bytes_sent']}")
    print(f"forget requests honoured: {len(result.audit)}; refused: {len(result.refused)}")
    print("federation audit log:")
    for entry in result.audit + result.refused:
        print(audit_line(entry))


app = make_server_app(base_fn, get_preset("paper-180nm"), rank=4, alpha=8.0, schedule_fn=schedule, on_result=report)
