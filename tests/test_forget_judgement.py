"""A request is validated whole before anything changes, judged after, and its membership figures have power."""
import copy

import pytest
import torch
from avalanche.training.plugins import EvaluationPlugin

from avalanche_rm.benchmarks import public_private_digits
from avalanche_rm.hardware import get_preset
from avalanche_rm.strategies import LoRAUnlearning, ShardedLoRAUnlearning, pretrain_and_program
from avalanche_rm.strategies.forgetting import snapshot_state
from avalanche_rm.training import make_mlp
from avalanche_rm.unlearning import (ForgetFailed, ForgetRefused, ForgetRequest, JudgePolicy, dataset_tensors,
                                     format_auc, generate_keys, judge, mia)

TRUST, KEYS = generate_keys("judgement lab", owners=range(5), controllers=["controller"])


def signed(request: ForgetRequest):
    return KEYS[request.requester].sign(request, TRUST.audience)


@pytest.fixture(scope="module")
def setup():
    sp = public_private_digits(1, public_fraction=0.3, n_owners=5, seed=0, public_classes=range(5))
    base = pretrain_and_program(make_mlp(), get_preset("paper-180nm"), sp.public_x, sp.public_y, public=True,
                                epochs=30)
    return sp, base


@pytest.fixture(scope="module")
def trained(setup):
    sp, base = setup
    s = LoRAUnlearning(model=copy.deepcopy(base), rank=8, alpha=16, train_epochs=6, eval_data=(sp.test_x, sp.test_y),
                       evaluator=EvaluationPlugin(loggers=[]), unlearn_epochs=4, trust=TRUST)
    s.train(sp.benchmark.train_stream[0])
    return s


def owner_ids(sp, owner, k):
    _, _, ids, owners = dataset_tensors(sp.benchmark.train_stream[0].dataset)
    return tuple(ids[owners == owner][:k].tolist())


def test_bad_method_or_options_are_refused_before_anything_changes(setup, trained):
    sp, _ = setup
    s = copy.deepcopy(trained)
    before = snapshot_state(s)
    adapters = s.model.adapter_names
    ids = owner_ids(sp, 2, 5)
    for req, match in [(ForgetRequest(requester=2, sample_ids=ids, method="not_a_method"), "unknown unlearning method"),
                       (ForgetRequest(requester=2, sample_ids=ids, method="neg_ce", options={"wieght": 1}), "wieght"),
                       (ForgetRequest(requester=2, sample_ids=ids, method="exact"), "cannot run on this learner"),
                       (ForgetRequest(requester=2, sample_ids=ids, method="drop", options={"x": 1}), "cannot run")]:
        with pytest.raises(ForgetRefused, match=match):
            s.forget(signed(req))
    after = snapshot_state(s)
    assert s.model.adapter_names == adapters  # no unlearning adapter was added for a request that fails later
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert before["ledger"] == after["ledger"] and after["audit"] == [] and before["registry"] == after["registry"]


def test_a_sharded_learner_runs_only_exact_requests(setup):
    sp, base = setup
    s = ShardedLoRAUnlearning(model=copy.deepcopy(base), n_shards=2, n_slices=1, epochs_per_slice=1,
                              evaluator=EvaluationPlugin(loggers=[]), trust=TRUST)
    s.train(sp.benchmark.train_stream[0])
    with pytest.raises(ForgetRefused, match="runs \\['exact'\\]"):
        s.forget(signed(ForgetRequest(requester=2, sample_ids=owner_ids(sp, 2, 3), method="neg_ce")))
    rec = s.forget(signed(ForgetRequest(requester=2, sample_ids=owner_ids(sp, 2, 3))))
    assert rec["method"] == "exact" and rec["guarantee"] == "bit-identical" and rec["status"] == "honoured"
    assert rec["judgement"]["status"] == "exact"


def _m(**kw):
    base = {"n_forget": 47.0, "forget_acc": 0.81, "retain_acc": 0.95, "TA": 0.93, "test_acc": 0.93}
    return {**base, **kw}


def test_the_judge_flags_what_the_issue_saw_and_passes_a_sound_result():
    p = JudgePolicy()
    ok = judge("approximate", None, _m(), _m(forget_acc=0.79, retain_acc=0.94, TA=0.92), p)
    assert ok["status"] == "honoured", ok
    up = judge("approximate", None, _m(), _m(forget_acc=0.94), p)          # random_label / scrub on samples
    assert up["status"] == "flagged" and up["failed"] == ["forget_not_raised"]
    over = judge("approximate", None, _m(), _m(forget_acc=0.0), p)          # pushed far below unseen data
    assert "forget_not_overshot" in over["failed"]
    flipped = _m(mia_loss_has_power=1.0, mia_loss_auc=0.28, mia_loss_auc_lo=0.18, mia_loss_auc_hi=0.38)
    assert judge("approximate", None, _m(), flipped, p)["failed"] == ["membership_near_chance"]
    destroyed = judge("approximate", None, _m(), _m(forget_acc=0.1, retain_acc=0.08, TA=0.1), p)
    assert {"retain_kept", "test_kept"} <= set(destroyed["failed"])
    cls = judge("approximate", (7,), _m(), _m(test_forget_class_acc=0.3), p)
    assert cls["failed"] == ["forget_classes_forgotten"]
    assert judge("bit-identical", None, _m(), _m(retain_acc=0.0), p)["status"] == "exact"
    # a small forget set gets the tolerance its binomial noise needs: one of ten samples is not a failure
    small = judge("approximate", None, _m(n_forget=10.0, forget_acc=1.0), _m(n_forget=10.0, forget_acc=0.8), p)
    assert "forget_not_overshot" not in small["failed"]
    with pytest.raises(ValueError, match="on_fail"):
        JudgePolicy(on_fail="ignore")


def test_a_destructive_request_is_flagged_or_rolled_back(setup, trained):
    sp, _ = setup
    ids = owner_ids(sp, 3, 20)
    brutal = {"forget_weight": -20.0}
    s = copy.deepcopy(trained)
    s.unlearn_lr = 0.5
    with pytest.warns(UserWarning, match="flagged"):
        rec = s.forget(signed(ForgetRequest(requester=3, sample_ids=ids, method="neg_ce", options=brutal)))
    assert rec["status"] == "flagged" and "retain_kept" in rec["judgement"]["failed"]
    assert rec["purged"]["registry"] == len(ids)  # a flag keeps the result: the data are gone
    s = copy.deepcopy(trained)
    s.unlearn_lr = 0.5
    s.forget_core.policy = JudgePolicy(on_fail="rollback")
    adapters, active, n = s.model.adapter_names, s.model.active_adapters, len(s.registry)
    with torch.no_grad(), s.model.fork_read_noise(3):
        s.model.eval()
        out_before = s.model(sp.test_x)
    with pytest.raises(ForgetFailed, match="restored") as err:
        s.forget(signed(ForgetRequest(requester=3, sample_ids=ids, method="neg_ce", options=brutal)))
    assert err.value.record["status"] == "rolled back" and s.audit_log[-1]["status"] == "rolled back"
    assert s.model.adapter_names == adapters and s.model.active_adapters == active and len(s.registry) == n
    with torch.no_grad(), s.model.fork_read_noise(3):
        assert torch.equal(s.model(sp.test_x), out_before)


def test_membership_figures_say_no_power_when_the_attack_has_none(setup, trained):
    sp, base = setup
    reg = trained.registry
    forget, retain = reg.split(torch.tensor(owner_ids(sp, 1, 30)))
    # the public base never saw the private data: members and non-members look alike to it
    blind = mia(base, forget, retain, (sp.test_x, sp.test_y))
    assert blind["mia_loss_power_lo"] <= 0.5 and not blind["mia_loss_has_power"]
    assert blind["mia_loss_auc"] != blind["mia_loss_auc"]  # NaN, never a number without power
    assert format_auc(blind).startswith("no power")
    # a model that memorised a few samples: the attack separates members from non-members
    torch.manual_seed(0)
    net = make_mlp(hidden=256)
    xr, yr = reg.x[:60], reg.y[:60]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xr), yr).backward()
        opt.step()
    sharp = mia(net, (xr[:20], yr[:20]), (xr[20:], yr[20:]), (sp.test_x, sp.test_y))
    assert sharp["mia_loss_has_power"] and sharp["mia_loss_power_lo"] > 0.5
    assert sharp["mia_loss_auc_lo"] <= sharp["mia_loss_auc"] <= sharp["mia_loss_auc_hi"]
    assert "n=20/" in format_auc(sharp)
