import json
import os

import pytest
import torch

from avalanche_rm.flower import (AdapterFedAvg, adapter_model, FederatedForgetRequest, InProcessGrid, adapter_record,
                                 make_client_app, make_server_app, run_federation)
from avalanche_rm.flower.digits_fl import base_fn, calibration_fn, data_fn
from avalanche_rm.hardware import get_preset
from avalanche_rm.unlearning import ForgetRequest, SigningKey, generate_keys

HW = get_preset("paper-180nm")
FED = "test federation"
# the clients' key directory (public keys) and each owner's signing key (owner id = partition id)
TRUST, KEYS = generate_keys(FED, owners=range(5))


def leave(pid: int) -> FederatedForgetRequest:
    """Owner ``pid`` asks for its whole client to be forgotten (signed with its key)."""
    return FederatedForgetRequest.client(KEYS[pid], pid, FED)


def forget_samples(pid: int, ids, method=None) -> FederatedForgetRequest:
    return FederatedForgetRequest.samples(KEYS[pid], pid, ids, FED, method=method)


def initial():
    m = adapter_model(base_fn, HW, rank=4, alpha=8)
    return m, adapter_record(m)


def federation(n=5, fail=(), schedule=None, rounds=3):
    app = make_client_app(base_fn, data_fn, HW, trust=TRUST, rank=4, alpha=8, local_epochs=1, fail_partitions=fail,
                          calibration_fn=calibration_fn)
    grid = InProcessGrid(app, n)
    strat = AdapterFedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
    m, init = initial()
    res = run_federation(grid, strat, init, rounds, schedule)
    return grid, strat, m, res


def ledger_of(ctx):
    return json.loads(ctx.state.config_records["ledger"]["json"])["totals"]


def test_adapter_only_exchange_and_no_pulses_after_deployment():
    grid, strat, m, res = federation(rounds=2)
    adapter_bytes = m.adapter_num_parameters() * 4
    for h in res.history:
        assert h["train"]["adapter-bytes"] == pytest.approx(adapter_bytes)  # every client sends exactly the adapter
        assert h["train"]["pulses"] == 0 and h["failures"] == 0
        assert h["bytes_sent"] >= 5 * adapter_bytes
    for arrays, _ in strat.contributions.values():
        assert all(".lora_" in k for k in arrays.to_torch_state_dict())
    chips = []
    for ctx in grid.contexts.values():
        led = ledger_of(ctx)
        assert led["deploy"]["pulses"] > 0 and led["train"].get("pulses", 0) == 0
        chips.append(ctx.state.array_records["chip"].to_torch_state_dict()["base_model.0.array.g_us"])
        assert all(".lora_" in k for k in ctx.state.array_records["adapter"].to_torch_state_dict())
    assert not torch.equal(chips[0], chips[1])  # each client's chip has its own variability


def test_dropping_a_client_gives_exactly_the_aggregate_without_it():
    grid, strat, m, res = federation(rounds=2)
    victim = grid.node_ids[2]
    others = {k: v for k, v in strat.contributions.items() if k != victim}
    total = sum(n for _, n in others.values())
    expected = {}
    for nid in sorted(others):  # the server's rule: summed in node order
        arrays, n = others[nid]
        for k, v in arrays.to_torch_state_dict().items():
            expected[k] = expected.get(k, 0) + v.double() * (n / total)
    new = strat.drop_client(victim).to_torch_state_dict()
    assert all(torch.equal(new[k], expected[k].float()) for k in new)
    assert victim not in [msg.metadata.dst_node_id for msg in strat.configure_train(3, adapter_record(m),
                                                                                      __import__("flwr").app.ConfigRecord({}), grid)]


def test_forget_requests_need_the_owner_signature():
    sched = {2: [FederatedForgetRequest.client(SigningKey.generate(), 1, FED),   # not owner 1's key
                 forget_samples(3, data_fn(3, 5).ids[:5].tolist()),
                 leave(4)]}
    grid, strat, m, res = federation(schedule=sched)
    assert [r["partition_id"] for r in res.refused] == [1]
    ctx1 = grid.contexts[grid.node_ids[1]]
    assert "forgotten" not in ctx1.state.array_records  # refused: nothing changed on that client
    assert [a["partition_id"] for a in res.audit] == [3, 4]
    assert all(a["client_pulses"] == 0 for a in res.audit)
    ctx3 = grid.contexts[grid.node_ids[3]]
    assert len(ctx3.state.array_records["forgotten"].to_torch_state_dict()["ids"]) == 5
    assert res.history[-1]["clients"] == 4  # client 4 left the federation


def test_a_failing_client_leaves_the_others_intact():
    grid, strat, m, res = federation(fail=(1,), rounds=2)
    assert all(h["failures"] == 1 for h in res.history)
    assert grid.node_ids[1] not in strat.contributions and len(strat.contributions) == 4
    assert res.history[-1]["eval"]["accuracy"] > 0.8


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AVALANCHE_RM_SKIP_RAY") == "1", reason="Ray simulation disabled")
def test_real_ray_simulation_with_a_forget_request(tmp_path):
    from flwr.simulation import run_simulation

    out = tmp_path / "result.json"

    def on_result(res):
        out.write_text(json.dumps({"history": res.history, "audit": res.audit, "refused": res.refused}))

    sched = {1: [leave(2)]}
    server = make_server_app(base_fn, HW, num_rounds=2, forget_schedule=sched, on_result=on_result)
    client = make_client_app(base_fn, data_fn, HW, trust=TRUST, local_epochs=1, calibration_fn=calibration_fn)
    run_simulation(server_app=server, client_app=client, num_supernodes=3,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    res = json.loads(out.read_text())
    assert len(res["history"]) == 2 and res["audit"][0]["partition_id"] == 2
    assert res["history"][1]["clients"] == 2


def test_forget_request_for_an_offline_client_waits_for_it():
    app = make_client_app(base_fn, data_fn, HW, trust=TRUST, rank=4, alpha=8, local_epochs=1, calibration_fn=calibration_fn)
    grid = InProcessGrid(app, 4)
    strat = AdapterFedAvg(min_train_nodes=3, min_evaluate_nodes=3, min_available_nodes=3)
    _, init = initial()
    grid.offline.add(grid.node_ids[3])
    sched = {1: [leave(3)]}
    res = run_federation(grid, strat, init, 1, sched)
    assert res.audit == [] and len(res.pending) == 1 and res.refused == []
    grid.offline.clear()
    strat.min_train_nodes = strat.min_evaluate_nodes = strat.min_available_nodes = 4
    res2 = run_federation(grid, strat, res.arrays, 1, {1: res.pending})
    assert [a["partition_id"] for a in res2.audit] == [3] and res2.pending == []
    grid.offline.add(grid.node_ids[0])
    strat.min_train_nodes = strat.min_evaluate_nodes = strat.min_available_nodes = 2
    res3 = run_federation(grid, strat, res.arrays, 1, {1: [leave(0)]},
                          queue_offline=False)
    assert res3.pending == [] and res3.refused[0]["reason"].startswith("client offline")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AVALANCHE_RM_SKIP_RAY") == "1", reason="Ray simulation disabled")
def test_flwr_run_of_the_example_app_and_superlink_stopped(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (Path(sys.executable).parent / "flwr").exists():
        pytest.skip("flwr CLI not installed next to this interpreter")
    import socket

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    # own ports: another `flwr run` on this machine (a second checkout, a CI run) must not collide with ours
    env = dict(os.environ, FLWR_HOME=str(tmp_path / "flwr"), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(free_port()), FLWR_LOCAL_CONTROL_API_PORT=str(free_port()))
    out = subprocess.run(["bash", str(root / "examples" / "flower_app" / "run.sh"), "3"], env=env,
                         capture_output=True, text=True, timeout=420)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "round 3: clients 2" in text and "forget requests honoured: 2; refused: 0" in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith('{"round"')]
    assert [(e["partition_id"], e["method"], e["status"]) for e in lines] == [(1, "drop", "honoured"),
                                                                            (2, "exact", "honoured")]
    import time

    for _ in range(40):  # the SuperLink gets SIGTERM on exit; give it a moment to go
        left = subprocess.run(["pgrep", "-f", f"flower-superlink.*{tmp_path}"], capture_output=True, text=True)
        if not left.stdout.strip():
            break
        time.sleep(0.25)
    assert left.stdout.strip() == ""


def test_malformed_or_poisoned_replies_are_kept_out_of_the_aggregate():
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    from avalanche_rm.flower.grid import _set_task_identity

    _set_task_identity(1, 0)
    strat = AdapterFedAvg(min_train_nodes=1, min_available_nodes=1)
    glob = ArrayRecord({"a": torch.zeros(2, 3)})
    strat._template = {"a": (2, 3)}

    def reply(nid, arr, n):
        sent = Message(RecordDict({"arrays": glob}), dst_node_id=nid, message_type="train")
        return Message(RecordDict({"arrays": ArrayRecord(arr), "metrics": MetricRecord({"num-examples": n})}),
                       reply_to=sent)

    strat.aggregate_train(1, [reply(1, {"a": torch.ones(2, 3)}, 10), reply(2, {"a": torch.full((2, 3), 2.0)}, 10)])
    agg, _ = strat.aggregate_train(2, [reply(1, {"a": torch.ones(2, 3)}, 10),
                                       reply(2, {"a": torch.full((2, 3), float("nan"))}, 10),
                                       reply(3, {"a": torch.ones(3, 3)}, 10), reply(4, {"b": torch.ones(2, 3)}, 10),
                                       reply(5, {"a": torch.ones(2, 3)}, -1)])
    assert torch.allclose(agg.to_torch_state_dict()["a"], torch.full((2, 3), 1.5))  # client 2's round-1 reply stays
    reasons = dict(strat.rejected[2])
    assert set(reasons) == {2, 3, 4, 5}
    assert "finite" in reasons[2] and "shape" in reasons[3] and "keys" in reasons[4] and "num-examples" in reasons[5]


def _forgotten_rows(pid: int, k: int, n: int = 5) -> tuple[tuple[int, ...], list[bytes]]:
    d = data_fn(pid, n)
    return tuple(d.ids[:k].tolist()), [row.contiguous().numpy().tobytes() for row in d.x[:k].to(torch.float32)]


def _state_hits(ctx, rows: list[bytes]) -> int:
    import pickle

    blob = pickle.dumps(ctx.state)  # everything the client keeps between rounds
    return sum(r in blob for r in rows)


@pytest.mark.parametrize("purge", [True, False])
def test_a_client_keeps_no_bytes_of_forgotten_samples(purge, monkeypatch):
    """With its data cached in Context.state, a client that honours a sample request keeps none of those rows;
    the control (purge switched off) shows the search finds them when they are there."""
    from avalanche_rm.unlearning import ForgetCore

    if not purge:
        honour = ForgetCore.honour
        monkeypatch.setattr(ForgetCore, "honour", lambda self, request, **kw: honour(self, request,
                                                                                     **{**kw, "purge": ()}))
    ids, rows = _forgotten_rows(3, 6)
    app = make_client_app(base_fn, data_fn, HW, trust=TRUST, local_epochs=1, cache_data=True, calibration_fn=calibration_fn)
    grid = InProcessGrid(app, 5)
    strat = AdapterFedAvg(min_train_nodes=5, min_evaluate_nodes=5, min_available_nodes=5)
    sched = {1: [forget_samples(3, ids)]}
    res = run_federation(grid, strat, initial()[1], 2, sched)
    assert [a["partition_id"] for a in res.audit] == [3]
    ctx = grid.contexts[grid.node_ids[3]]
    other = grid.contexts[grid.node_ids[1]]
    assert _state_hits(other, _forgotten_rows(1, 6)[1]) == 6  # cached data are in the state the search reads
    hits = _state_hits(ctx, rows)
    if purge:
        assert hits == 0
        rec = res.audit[0]["client_record"]
        assert rec["sample_ids"] == sorted(ids) and rec["purged"]["client_state"] == len(ids)
        assert set(rec["metrics_before"]) >= {"forget_acc", "retain_acc", "test_acc"}
    else:
        assert hits == len(rows)


def test_exact_sample_unlearning_on_a_sharded_client_is_exact():
    """The contribution of a sharded client after an exact request equals that of a client that never held
    the samples (same round start, seeds and read-noise streams), and writes no cell."""
    from avalanche_rm.flower import ClientData

    ids, _ = _forgotten_rows(2, 6, n=4)

    def without(pid, n):
        d = data_fn(pid, n)
        if pid != 2:
            return d
        keep = ~torch.isin(d.ids, torch.tensor(ids))
        return ClientData(d.x[keep], d.y[keep], d.ids[keep], d.x_test, d.y_test)

    def run(fn, sched):
        app = make_client_app(base_fn, fn, HW, trust=TRUST, local_epochs=1, shards=3, calibration_fn=calibration_fn)
        grid = InProcessGrid(app, 4)
        strat = AdapterFedAvg(min_train_nodes=4, min_evaluate_nodes=4, min_available_nodes=4)
        return grid, strat, run_federation(grid, strat, initial()[1], 1, sched)

    req = forget_samples(2, ids, method="exact")
    g1, s1, r1 = run(data_fn, {1: [req]})
    g2, s2, _ = run(without, None)
    a = s1.contributions[g1.node_ids[2]][0].to_torch_state_dict()
    b = s2.contributions[g2.node_ids[2]][0].to_torch_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert s1.contributions[g1.node_ids[2]][1] == s2.contributions[g2.node_ids[2]][1]
    entry = r1.audit[0]
    assert entry["method"] == "exact" and entry["client_pulses"] == 0
    assert entry["client_record"]["affected"]["retrained_shards"]
    # a client without shards refuses an exact request, unchanged
    app = make_client_app(base_fn, data_fn, HW, trust=TRUST, local_epochs=1, calibration_fn=calibration_fn)
    strat = AdapterFedAvg(min_train_nodes=4, min_evaluate_nodes=4, min_available_nodes=4)
    r3 = run_federation(InProcessGrid(app, 4), strat, initial()[1], 1, {1: [req]})
    assert r3.audit == [] and "sharded" in r3.refused[0]["reason"]


def test_sample_requests_name_their_method():
    reqs = [forget_samples(1, _forgotten_rows(1, 8)[0], method="neg_ce"),
            forget_samples(3, _forgotten_rows(3, 8)[0], method="random_label")]
    app = make_client_app(base_fn, data_fn, HW, trust=TRUST, local_epochs=1, calibration_fn=calibration_fn)
    grid = InProcessGrid(app, 5)
    strat = AdapterFedAvg(min_train_nodes=5, min_evaluate_nodes=5, min_available_nodes=5)
    res = run_federation(grid, strat, initial()[1], 1, {1: reqs})
    assert [(a["partition_id"], a["method"]) for a in res.audit] == [(1, "neg_ce"), (3, "random_label")]
    for a in res.audit:
        assert a["client_record"]["affected"]["method"] == a["method"] and a["client_record"]["affected"]["steps"] >= 1
        assert a["client_energy_pj"] > 0 and a["client_pulses"] == 0
    assert leave(0).method == "drop" and leave(0).kind == "client"
    with pytest.raises(ValueError, match="not_a_method"):
        forget_samples(0, (1,), method="not_a_method")
    with pytest.raises(ValueError, match="drops the client"):
        FederatedForgetRequest(0, KEYS[0].sign(ForgetRequest(requester=0, owner=0, method="neg_ce"), FED))


@pytest.mark.slow
def test_deployment_engine_two_supernodes_forget_request_reaches_the_right_chip(tmp_path):
    """SuperLink + 2 SuperNodes as separate processes; partition 1's owner asks to be forgotten."""
    import re
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (Path(sys.executable).parent / "flower-superlink").exists():
        pytest.skip("Flower's SuperLink is not installed next to this interpreter")
    with socket.socket() as sock:  # a free base port; the script uses it and +10, +11 for the SuperNodes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1] % 20000 + 30000
    logs = tmp_path / "logs"
    env = dict(os.environ, FLWR_HOME=str(tmp_path / "flwr"), RMAPP_LOGS=str(logs), RMAPP_PORT=str(port),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    (tmp_path / "flwr").mkdir()
    out = subprocess.run(["bash", str(root / "examples" / "flower_app" / "deploy.sh"), "2",
                          "num-server-rounds=1 fraction-evaluate=0 forget-round=1 forget-partition=1 forget-samples=0"],
                         env=env, capture_output=True, text=True, timeout=480)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    audit = [json.loads(line) for line in text.splitlines() if line.startswith('{"round"')]
    assert [(e["partition_id"], e["method"], e["status"]) for e in audit] == [(1, "drop", "honoured")]
    node1, node0 = (logs / "supernode-1.log").read_text(), (logs / "supernode-0.log").read_text()
    assert "forget request honoured on partition 1" in node1      # the chip that held partition 1 did the work
    assert "forget request honoured" not in node0                 # the other chip never saw the request
    assert "train.forget" in node1 and "train.forget" not in node0
    assert "evaluate message" not in node0 + node1              # fraction-evaluate=0: no client evaluated
    # everything the script started is gone (process groups killed by id; zombies awaiting their reaper aside)
    pids = [int(p) for p in re.search(r"stopped 3 process groups: ([\d ]+)", text).group(1).split()]
    time.sleep(1)
    for pid in pids:
        alive = subprocess.run(["ps", "-o", "stat=", "-g", str(pid)], capture_output=True, text=True).stdout.split()
        assert all(s.startswith("Z") for s in alive), (pid, alive)


def test_a_client_without_its_owners_keys_does_not_start():
    from avalanche_rm.unlearning import KeyDirectory

    with pytest.raises(ValueError, match="trust=KeyDirectory"):
        make_client_app(base_fn, data_fn, HW)
    with pytest.raises(ValueError, match="holds no public key"):
        make_client_app(base_fn, data_fn, HW, trust=KeyDirectory(FED))


@pytest.mark.slow
def test_the_example_client_app_needs_the_owners_keys(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    app_dir = Path(__file__).resolve().parents[1] / "examples" / "flower_app"
    env = {k: v for k, v in os.environ.items() if k != "RMAPP_KEYS"}
    out = subprocess.run([sys.executable, "-c", "import rmapp.client_app"], cwd=app_dir, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0 and "RMAPP_KEYS is not set" in out.stderr


def test_forged_replayed_and_misrouted_federated_requests_change_nothing_on_the_client():
    """The server only carries requests: a forged, replayed, misaddressed or misrouted one is refused by the
    client before anything of its state changes."""
    import pickle

    app = make_client_app(base_fn, data_fn, HW, trust=TRUST, local_epochs=1, cache_data=True,
                          calibration_fn=calibration_fn)
    grid = InProcessGrid(app, 4)
    strat = AdapterFedAvg(min_train_nodes=4, min_evaluate_nodes=4, min_available_nodes=4)
    ids = _forgotten_rows(1, 5, n=4)[0]
    honoured = forget_samples(1, ids)
    res = run_federation(grid, strat, initial()[1], 1, {1: [honoured]})
    assert [a["partition_id"] for a in res.audit] == [1] and res.audit[0]["n_samples"] == 5
    ctx = grid.contexts[grid.node_ids[1]]
    mallory = SigningKey.generate()
    bad = {"replayed": (honoured, "replay"),
           "forged": (FederatedForgetRequest.samples(mallory, 1, _forgotten_rows(1, 9, n=4)[0][5:], FED),
                      "signed with key"),
           "forged signature bytes": (FederatedForgetRequest(1, __import__("dataclasses").replace(
               forget_samples(1, (int(data_fn(1, 4).ids[7]),)).signed, signature="00" * 64)), "does not verify"),
           "another federation's": (FederatedForgetRequest.client(KEYS[1], 1, "other federation"), "addressed to"),
           "another owner's, routed here": (FederatedForgetRequest(1, KEYS[3].sign(
               ForgetRequest(requester=3, owner=3), FED)), "owner 3 has no learned data")}
    for name, (req, why) in bad.items():
        state = pickle.dumps(ctx.state)
        reply = list(grid.send_and_receive([strat.configure_forget(req, grid.node_ids[1], res.arrays)]))[0]
        new, entry = strat.aggregate_forget(req, grid.node_ids[1], reply)
        assert new is None and entry["status"] == "refused" and why in entry["reason"], (name, entry)
        assert pickle.dumps(ctx.state) == state, name
    assert len(ctx.state.array_records["forgotten"].to_torch_state_dict()["ids"]) == 5
    # a replay in a later round is refused the same way (the store lives in Context.state)
    res2 = run_federation(grid, strat, res.arrays, 1, {1: [honoured]})
    assert res2.audit == [] and "replay" in res2.refused[0]["reason"]
