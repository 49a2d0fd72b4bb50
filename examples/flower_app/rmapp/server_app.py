"""ServerApp: adapter-only FedAvg; the owner of partition ``forget-partition`` asks to be forgotten."""
from avalanche_rm.flower import make_server_app, owner_token
from avalanche_rm.flower.server import FederatedForgetRequest
from avalanche_rm.flower.digits_fl import base_fn
from avalanche_rm.hardware import get_preset


def schedule(run_config: dict) -> dict:
    rnd = int(run_config.get("forget-round", 2))
    pid = int(run_config.get("forget-partition", 1))
    # in this demo the server forwards the owner's request, token included
    return {rnd: [FederatedForgetRequest(pid, owner_token("federation-secret", pid))]}


def report(result) -> None:
    for h in result.history:
        print(f"round {h['round']}: clients {h['clients']}, eval accuracy {h['eval'].get('accuracy', float('nan')):.3f}, "
              f"adapter bytes received {h['bytes_sent']}")
    print(f"forget requests honoured: {result.audit}; refused: {result.refused}")


app = make_server_app(base_fn, get_preset("paper-180nm"), rank=4, alpha=8.0, schedule_fn=schedule, on_result=report)
