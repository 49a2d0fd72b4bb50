"""ServerApp: adapter-only FedAvg; after round ``forget-round`` the owner of partition ``forget-partition``
asks to be forgotten, and the owner of the next partition asks for ``forget-samples`` of its samples to be
forgotten with method ``sample-method`` (``exact``, or any registered objective; 0 samples: no such request)."""
from avalanche_rm.flower import FederatedForgetRequest, audit_line, make_server_app, owner_token
from avalanche_rm.flower.digits_fl import base_fn, data_fn
from avalanche_rm.hardware import get_preset


def schedule(run_config: dict) -> dict:
    rnd = int(run_config.get("forget-round", 2))
    pid = int(run_config.get("forget-partition", 1))
    n = int(run_config.get("num-partitions", 3))
    other = (pid + 1) % n
    k = int(run_config.get("forget-samples", 5))
    # in this demo the server forwards the owners' requests, tokens included
    requests = [FederatedForgetRequest(pid, owner_token("federation-secret", pid))]
    if k > 0:  # forget-samples = 0: only the client-level request
        ids = tuple(data_fn(other, n).ids[:k].tolist())
        requests.append(FederatedForgetRequest(other, owner_token("federation-secret", other), kind="samples",
                                               sample_ids=ids, method=str(run_config.get("sample-method", "exact"))))
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
