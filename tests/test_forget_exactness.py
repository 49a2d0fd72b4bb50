"""Exact means bit-identical to never having trained on the data, for every request type that claims it."""
import copy

import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin

from avalanche_rm.benchmarks import public_private_digits
from avalanche_rm.hardware import get_preset
from avalanche_rm.strategies import ShardedLoRAUnlearning, pretrain_and_program
from avalanche_rm.training import make_mlp
from avalanche_rm.unlearning import ForgetRequest, dataset_tensors, generate_keys

TRUST, KEYS = generate_keys("exactness lab", owners=range(5), controllers=["controller"])


def signed(request: ForgetRequest):
    return KEYS[request.requester].sign(request, TRUST.audience)


@pytest.fixture(scope="module")
def setup():
    sp = public_private_digits(1, public_fraction=0.3, n_owners=5, seed=0, public_classes=range(5))
    base = pretrain_and_program(make_mlp(), get_preset("paper-180nm"), sp.public_x, sp.public_y, public=True,
                                epochs=30)
    return sp, base


def sharded(base, sp, **kw):
    args = dict(n_shards=3, n_slices=2, rank=4, epochs_per_slice=3, eval_data=(sp.test_x, sp.test_y),
                evaluator=EvaluationPlugin(loggers=[]), trust=TRUST)
    args.update(kw)
    return ShardedLoRAUnlearning(model=copy.deepcopy(base), **args)


def without(exp, drop_ids):
    _, _, ids, _ = dataset_tensors(exp.dataset)
    keep = [i for i, v in enumerate(ids.tolist()) if v not in set(drop_ids.tolist())]
    exp2 = copy.copy(exp)
    exp2.dataset = exp.dataset.subset(keep)
    return exp2


def same_adapters(s1, s2):
    assert sorted(s1.shards) == sorted(s2.shards)
    for key in s1.shards:
        a = s1.model.adapter_state_dict(f"shard{key}")
        b = s2.model.adapter_state_dict(f"shard{key}")
        assert all(torch.equal(a[k], b[k]) for k in a), key


def test_class_forgetting_is_bit_identical_to_never_training_on_the_class(setup):
    sp, base = setup
    exp = sp.benchmark.train_stream[0]
    _, y, ids, _ = dataset_tensors(exp.dataset)
    s1 = sharded(base, sp)
    s1.train(exp)
    s1.forget(signed(ForgetRequest(requester="controller", classes=(7,))))
    s2 = sharded(base, sp)
    s2.train(without(exp, ids[y == 7]))
    same_adapters(s1, s2)
    with torch.no_grad(), s1.model.fork_read_noise(5), s2.model.fork_read_noise(5):  # the same read-noise draws
        s1.model.eval(), s2.model.eval()
        assert torch.equal(s1.aggregate(sp.test_x), s2.aggregate(sp.test_x))
    # nothing of the model discloses that class 7 was learned: no shard's output mask still holds it
    assert all(7 not in s1.sisa.shard_classes(st) for st in s1.shards.values())


def test_a_shard_never_sees_another_shards_classes(setup):
    """Each stage trains under the base's classes and its own data's: an owner's shard is isolated."""
    sp, base = setup
    s = sharded(base, sp, shard_by="owner")
    s.train(sp.benchmark.train_stream[0])
    for st in s.shards.values():
        own = set(s.registry.y[s.registry.positions(st.ids())].tolist())
        assert s.sisa.shard_classes(st) == sorted(own | set(base.base_classes))


def test_a_batchnorm_base_never_learns_private_data_and_sample_forgetting_stays_exact(setup):
    sp, _ = setup
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    base = pretrain_and_program(net, get_preset("paper-180nm"), sp.public_x, sp.public_y, public=True, epochs=10)
    bn = base.base_model[1]
    stats = {k: v.clone() for k, v in bn.state_dict().items()}
    exp = sp.benchmark.train_stream[0]
    _, _, ids, owners = dataset_tensors(exp.dataset)
    forget = ids[owners == 2][:20]
    s1 = sharded(base, sp)
    s1.train(exp)
    s1.model.train()  # what every Avalanche loop calls
    assert not s1.model.base_model[1].training
    after = s1.model.base_model[1].state_dict()
    assert all(torch.equal(stats[k], after[k]) for k in stats)  # running stats and batch count unchanged
    s1.forget(signed(ForgetRequest(requester=2, sample_ids=tuple(forget.tolist()))))
    s2 = sharded(base, sp)
    s2.train(without(exp, forget))
    same_adapters(s1, s2)
    with torch.no_grad(), s1.model.fork_read_noise(5), s2.model.fork_read_noise(5):
        s1.model.eval(), s2.model.eval()
        assert torch.equal(s1.aggregate(sp.test_x), s2.aggregate(sp.test_x))


# ------------------------------------------------------------------ federated: exact after round 1 too
FL_TRUST, FL_KEYS = generate_keys("exactness federation", owners=range(4))


def _federation(data, sched, rounds=2, n=4, excluded_partition=None, replay=True):
    from avalanche_rm.flower import AdapterFedAvg, InProcessGrid, adapter_model, adapter_record, make_client_app
    from avalanche_rm.flower import run_federation
    from avalanche_rm.flower.digits_fl import base_fn, calibration_fn

    hw = get_preset("paper-180nm")
    app = make_client_app(base_fn, data, hw, local_epochs=1, shards=2, calibration_fn=calibration_fn, trust=FL_TRUST)
    grid = InProcessGrid(app, n)
    strat = AdapterFedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
    if excluded_partition is not None:  # a federation that never had this client
        strat.excluded.add(grid.node_ids[excluded_partition])
    res = run_federation(grid, strat, adapter_record(adapter_model(base_fn, hw)), rounds, sched, replay=replay)
    return grid, strat, res


def _same_federation(a, b, skip=()):
    (ga, sa, ra), (gb, sb, rb) = a, b
    x, y = ra.arrays.to_torch_state_dict(), rb.arrays.to_torch_state_dict()
    same = all(torch.equal(x[k], y[k]) for k in x)
    for i, (na, nb) in enumerate(zip(ga.node_ids, gb.node_ids)):
        if i in skip:
            continue
        (aa, n_a), (ab, n_b) = sa.contributions[na], sb.contributions[nb]
        ta, tb = aa.to_torch_state_dict(), ab.to_torch_state_dict()
        same = same and n_a == n_b and all(torch.equal(ta[k], tb[k]) for k in ta)
    return same


@pytest.mark.slow
def test_federated_exact_requests_after_round_one_replay_to_the_federation_that_never_had_the_data():
    from avalanche_rm.flower import ClientData, FederatedForgetRequest
    from avalanche_rm.flower.digits_fl import data_fn

    ids = tuple(data_fn(2, 4).ids[:6].tolist())

    def without(pid, n):
        d = data_fn(pid, n)
        if pid != 2:
            return d
        keep = ~torch.isin(d.ids, torch.tensor(ids))
        return ClientData(d.x[keep], d.y[keep], d.ids[keep], d.x_test, d.y_test)

    def samples():
        return {2: [FederatedForgetRequest.samples(FL_KEYS[2], 2, ids, FL_TRUST.audience, method="exact")]}

    never = _federation(without, None)
    replayed = _federation(data_fn, samples())
    entry = replayed[2].audit[0]
    assert entry["guarantee"] == "bit-identical" and entry["replay"]["rounds"] == [1, 2]
    assert entry["replay"]["client_rounds"] == 8 and entry["replay"]["pulses"] == 0
    assert _same_federation(replayed, never)  # the global adapter and every client's contribution
    # without the replay only round 2's contribution is retrained: recorded as approximate, and it is not exact
    late = _federation(data_fn, samples(), replay=False)
    assert late[2].audit[0]["guarantee"] == "approximate" and not _same_federation(late, never)

    # a whole client leaving after round 2: the federation that never had it
    def leave():
        return {2: [FederatedForgetRequest.client(FL_KEYS[2], 2, FL_TRUST.audience)]}

    dropped = _federation(data_fn, leave())
    assert dropped[2].audit[0]["guarantee"] == "bit-identical"
    assert _same_federation(dropped, _federation(data_fn, None, excluded_partition=2), skip=(2,))
    assert not _same_federation(_federation(data_fn, leave(), replay=False),
                                _federation(data_fn, None, excluded_partition=2), skip=(2,))
