import json
import os

import pytest
import torch

from avalanche_rm.flower import (ADAPTER, AdapterFedAvg, FederatedForgetRequest, InProcessGrid, adapter_record,
                                 make_client_app, make_server_app, owner_token, run_federation)
from avalanche_rm.flower.digits_fl import base_fn, data_fn
from avalanche_rm.hardware import get_preset
from avalanche_rm.nn import convert_to_hybrid

HW = get_preset("paper-180nm")


def initial():
    m = convert_to_hybrid(base_fn(), HW)
    m.add_adapter(ADAPTER, rank=4, alpha=8, seed=0, bias=True)
    return m, adapter_record(m)


def federation(n=5, fail=(), schedule=None, rounds=3):
    app = make_client_app(base_fn, data_fn, HW, rank=4, alpha=8, local_epochs=1, fail_partitions=fail)
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
        chips.append(ctx.state.array_records["chip"].to_torch_state_dict()["base_model.0.g_us"])
    assert not torch.equal(chips[0], chips[1])  # each client's chip has its own variability


def test_dropping_a_client_gives_exactly_the_aggregate_without_it():
    grid, strat, m, res = federation(rounds=2)
    victim = grid.node_ids[2]
    others = {k: v for k, v in strat.contributions.items() if k != victim}
    total = sum(n for _, n in others.values())
    expected = {}
    for arrays, n in others.values():
        for k, v in arrays.to_torch_state_dict().items():
            expected[k] = expected.get(k, 0) + v.double() * n / total
    new = strat.drop_client(victim).to_torch_state_dict()
    assert all(torch.equal(new[k], expected[k].float()) for k in new)
    assert victim not in [msg.metadata.dst_node_id for msg in strat.configure_train(3, adapter_record(m),
                                                                                      __import__("flwr").app.ConfigRecord({}), grid)]


def test_forget_requests_need_the_owner_token():
    sched = {2: [FederatedForgetRequest(1, "not-the-token"),
                 FederatedForgetRequest(3, owner_token("federation-secret", 3), kind="samples",
                                        sample_ids=tuple(data_fn(3, 5).ids[:5].tolist())),
                 FederatedForgetRequest(4, owner_token("federation-secret", 4))]}
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


@pytest.mark.skipif(os.environ.get("AVALANCHE_RM_SKIP_RAY") == "1", reason="Ray simulation disabled")
def test_real_ray_simulation_with_a_forget_request(tmp_path):
    from flwr.simulation import run_simulation

    out = tmp_path / "result.json"

    def on_result(res):
        out.write_text(json.dumps({"history": res.history, "audit": res.audit, "refused": res.refused}))

    sched = {1: [FederatedForgetRequest(2, owner_token("federation-secret", 2))]}
    server = make_server_app(base_fn, HW, num_rounds=2, forget_schedule=sched, on_result=on_result)
    client = make_client_app(base_fn, data_fn, HW, local_epochs=1)
    run_simulation(server_app=server, client_app=client, num_supernodes=3,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    res = json.loads(out.read_text())
    assert len(res["history"]) == 2 and res["audit"][0]["partition_id"] == 2
    assert res["history"][1]["clients"] == 2
