"""Every stock Avalanche plugin is purged or refused, on every kind of forget request.

The matrix: each plugin Avalanche 0.6 ships x sample / class / owner request x
ShardedLoRAUnlearning and LoRAUnlearning (real digits, two experiences; the
three requests are made one after another on the same strategy). A request is
either refused naming the plugin, with nothing changed (every live tensor of
the strategy, its ledger, audit, registry and forgotten ids compared), or
honoured, and then no forgotten row's bytes are left in a dill pickle of the
strategy, in a checkpoint written after it or in any live tensor reachable
from it; with the sharded (exact) strategy no tensor of an adapter a request
retrained or dropped is left either (a teacher, a best state or saved
parameters would keep one). Controls: with the purges switched off the same
searches find what the purges remove, and with a check switched off the
refused request goes through, so every search and refusal has power.

To stay fast, plugins that are purged share one strategy per kind of strategy
(they are trained together), refusing plugins are tried one at a time on a
strategy trained with all of them, and each test item reads its plugin's
results. Plugins that cannot train with these strategies on this stack (they
need a BaseModel, an fc layer, an NCM head, a QP solver, torch < 2.2, ...) get
their state from their own update functions after training.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.evaluation.metrics.checkpoint import WeightCheckpoint
from avalanche.evaluation.metrics.images_samples import ImagesSamplePlugin
from avalanche.models.packnet import PackNetPlugin
from avalanche.training.losses import ICaRLLossPlugin, MaskedCrossEntropy
from avalanche.training.plugins import (AGEMPlugin, BiCPlugin, CoPEPlugin, CWRStarPlugin, EarlyStoppingPlugin,
                                        EvaluationPlugin, EWCPlugin, FeatureDistillationPlugin,
                                        FromScratchTrainingPlugin, GDumbPlugin, GEMPlugin, GenerativeReplayPlugin,
                                        GSS_greedyPlugin, LFLPlugin, LRSchedulerPlugin, LwFPlugin, MASPlugin,
                                        MIRPlugin, RARPlugin, ReplayPlugin, RWalkPlugin, SupervisedPlugin,
                                        SynapticIntelligencePlugin, TrainGeneratorAfterExpPlugin)
from avalanche.training.plugins.update_fecam import CurrentDataFeCAMUpdate, FeCAMOracle, MemoryFeCAMUpdate
from avalanche.training.plugins.update_ncm import CurrentDataNCMUpdate, MemoryNCMUpdate, NCMOracle
from avalanche.training.storage_policy import (ClassBalancedBuffer, HerdingSelectionStrategy, ParametricBuffer,
                                               ReservoirSamplingBuffer)
from avalanche.training.supervised.der import ClassBalancedBufferWithLogits
from avalanche.training.supervised.expert_gate import _ExpertGatePlugin
from avalanche.training.supervised.icarl import _ICaRLPlugin

from avalanche_rm.benchmarks import public_private_digits, tensor_dataset
from avalanche_rm.hardware import get_preset
from avalanche_rm.strategies import LoRAUnlearning, ShardedLoRAUnlearning, pretrain_and_program, save_checkpoint
from avalanche_rm.strategies.holders import Gradients, OptimizerState, treatments
from avalanche_rm.training import make_mlp
from avalanche_rm.unlearning import HOLDERS, ForgetRefused, ForgetRequest, dataset_tensors, generate_keys
from avalanche_rm.unlearning.holders import labelled
from forgotten_bytes import found, live_blob, pickled, row_bytes

STRATEGIES = ("sharded", "lora")
# the learners' key directory and every principal's signing key
TRUST, KEYS = generate_keys("holders lab", owners=range(5), controllers=["controller"])


def signed(request: ForgetRequest):
    """``request`` signed now by its requester's key (each use is a fresh signature)."""
    return KEYS[request.requester].sign(request, TRUST.audience)


# ------------------------------------------------------------------ data, base, requests
@dataclass
class World:
    sp: object
    base: object
    exps: list
    x: torch.Tensor
    ids: torch.Tensor
    owners: torch.Tensor
    requests: list


@pytest.fixture(scope="module")
def world():
    sp = public_private_digits(2, public_fraction=0.3, n_owners=5, seed=0, public_classes=range(5))
    base = pretrain_and_program(make_mlp(), get_preset("paper-180nm"), sp.public_x, sp.public_y, public=True,
                                epochs=10)
    exps = []
    for e in sp.benchmark.train_stream:  # every other row: the matrix trains many strategies
        half = copy.copy(e)
        half.dataset = e.dataset.subset(range(0, len(e.dataset), 2))
        exps.append(half)
    xs, ys, idss, owns = zip(*(dataset_tensors(e.dataset) for e in exps))
    samples = idss[1][owns[1] == 2][:8]                # owner 2's, all in the last experience
    cls = int(ys[1][0])                                  # a class of the last experience only
    assert not bool((ys[0] == cls).any())
    assert bool((owns[0] == 3).any()) and bool((owns[1] == 3).any())
    requests = [ForgetRequest(requester=2, sample_ids=tuple(samples.tolist())),
                ForgetRequest(requester="controller", classes=(cls,)),
                ForgetRequest(requester=3, owner=3)]    # spans both experiences
    return World(sp, base, exps, torch.cat(xs), torch.cat(idss), torch.cat(owns), requests)


def quiet():
    return EvaluationPlugin(loggers=[])


def build(strategy: str, world: World, noise: bool = True, **kw):
    """``noise=False``: reads without analogue read noise, so a recomputed importance can be compared bit for bit."""
    torch.manual_seed(0)
    s = _build(strategy, world, trust=TRUST, **kw)
    s.model.set_analog_noise(noise)
    return s


def _build(strategy: str, world: World, **kw):
    if strategy == "lora":
        args = dict(rank=4, alpha=8, train_epochs=1, unlearn_epochs=1, evaluator=quiet())
        args.update(kw)
        return LoRAUnlearning(model=copy.deepcopy(world.base), **args)
    args = dict(shard_by="owner", n_slices=1, rank=4, epochs_per_slice=1, evaluator=quiet())
    args.update(kw)
    return ShardedLoRAUnlearning(model=copy.deepcopy(world.base), **args)


def forgotten_rows(world: World, s) -> list[bytes]:
    return row_bytes(world.x[torch.isin(world.ids, s.forgotten_ids)])


# ------------------------------------------------------------------ filling a plugin that cannot train here
def fill_storage(p, s, world):
    for e in world.exps:  # as the plugin's after_training_exp does
        s.experience = e
        p.storage_policy.update(s)
    s.experience = None


def fill_gem(p, s, world):
    for t, e in enumerate(world.exps):
        p.update_memory(e.dataset, t, 32)


def fill_teacher(attr):
    def fill(p, s, world):
        setattr(p, attr, copy.deepcopy(s.model))
    return fill


def fill_gdumb(p, s, world):
    fill_storage(p, s, world)
    p.init_model = copy.deepcopy(world.base)  # its snapshot before the first experience


def fill_icarl_loss(p, s, world):
    p.old_model = copy.deepcopy(s.model)
    p.old_classes = sorted(int(c) for c in torch.unique(s.registry.y).tolist())


def fill_datasets(p, s, world):
    p.all_datasets.extend(e.dataset for e in world.exps)


def nothing(p, s, world):
    pass


# ------------------------------------------------------------------ what purges leave
def adapters_equal(a, b) -> bool:
    if sorted(a.adapter_names) != sorted(b.adapter_names) or a.active_adapters != b.active_adapters:
        return False
    return all(torch.equal(x, y) for n in a.adapter_names
               for x, y in zip(a.adapter_state_dict(n).values(), b.adapter_state_dict(n).values()))


def teacher(attr, inner=None):
    return lambda p: getattr(getattr(p, inner) if inner else p, attr)


def teacher_is_the_model(get):
    def after(p, s, world):
        t = get(p)
        assert t is not s.model and adapters_equal(t, s.model), "the teacher is not the model after the request"
        assert all(q.grad is None for q in t.parameters())
    return after


def retained_last_experience(world: World, s):
    x, y, ids, owners = dataset_tensors(world.exps[-1].dataset)
    keep = ~torch.isin(ids, s.forgotten_ids)
    return tensor_dataset(x[keep], y[keep], sample_ids=ids[keep], owners=owners[keep])


def ewc_recomputed(p, s, world):
    """The last experience's importance: the plugin's own function on its retained rows, at the model now."""
    last = len(world.exps) - 1
    imp = p.compute_importances(s.model, s._criterion, s.optimizer, retained_last_experience(world, s), s.device,
                                s.train_mb_size)
    for q in s.model.parameters():
        q.grad = None
    want = {k: v.data for k, v in imp.items()}
    if p.mode == "online":  # decay * previous + current, as update_importances folds it (new parameters: current)
        prev = p.importances[last - 1]
        want = {k: p.decay_factor * prev[k].data + v if k in prev else v for k, v in want.items()}
    got = p.importances[last]
    assert set(got) == set(want) and all(torch.equal(got[k].data, want[k]) for k in got)
    assert all(torch.equal(p.saved_params[last][k].data, q.data) for k, q in s.model.named_parameters())


def class_sets(p) -> list[set]:
    """The class labels a plugin keeps (storage-policy groups by class, distilled units, old classes)."""
    out = []
    pol = getattr(p, "storage_policy", None)
    if isinstance(pol, ClassBalancedBuffer) or getattr(pol, "groupby", None) == "class":
        out += [set(pol.buffer_groups), set(getattr(pol, "seen_classes", getattr(pol, "seen_groups", set())))]
    lwf = getattr(p, "lwf", None)
    if lwf is not None:
        out += [set(c) for c in lwf.prev_classes_by_task.values()]
    if isinstance(p, ICaRLLossPlugin):
        out.append(set(p.old_classes))
    return out


def fill_early_stopping(p, s, world):
    s.eval(world.sp.benchmark.test_stream)  # the metric its own _update_best reads, as between epochs
    p._update_best(s)


def es_dropped(p, s, world):
    assert p.best_state is None and p.best_val is None


# ------------------------------------------------------------------ the cases
@dataclass
class Case:
    make: Callable
    group: str                                   # ok: purged on every request | last | refuse
    kind: str = "rows"                           # rows | teacher | best | importance | none | refuse
    fill: object = None                          # None: trains here; a function, or {strategy: function}
    after: Callable | None = None                # what the purge leaves, checked after every honoured request
    get_teacher: Callable | None = None
    refuse: dict = field(default_factory=dict)   # group "refuse" per strategy: {"lora": "ok"} if not refused there

    def filler(self, strategy: str):
        return self.fill.get(strategy) if isinstance(self.fill, dict) else self.fill


def _t(attr, inner=None):
    return dict(kind="teacher", get_teacher=teacher(attr, inner), after=teacher_is_the_model(teacher(attr, inner)))


CASES: dict[str, Case] = {
    # ---- replay: every storage policy; memories
    "ReplayPlugin": Case(lambda s: ReplayPlugin(200), "ok"),
    "ReplayPlugin+ClassBalancedBuffer": Case(
        lambda s: ReplayPlugin(200, storage_policy=ClassBalancedBuffer(200)), "ok"),
    "ReplayPlugin+ReservoirSamplingBuffer": Case(
        lambda s: ReplayPlugin(200, storage_policy=ReservoirSamplingBuffer(200)), "ok"),
    "ReplayPlugin+ParametricBuffer": Case(
        lambda s: ReplayPlugin(200, storage_policy=ParametricBuffer(200, groupby="class")), "ok"),
    "GDumbPlugin": Case(lambda s: GDumbPlugin(200), "ok", fill=fill_gdumb),
    "MIRPlugin": Case(lambda s: MIRPlugin(batch_size_mem=10, mem_size=200, subsample=20), "ok",
                      fill={"sharded": fill_storage}),
    "RARPlugin": Case(lambda s: RARPlugin(batch_size_mem=10, mem_size=200), "ok", fill={"lora": fill_storage}),
    "GEMPlugin": Case(lambda s: GEMPlugin(32, 0.5), "ok", fill={"lora": fill_gem}),
    "AGEMPlugin": Case(lambda s: AGEMPlugin(64, 32), "ok"),
    # ---- teachers and best states
    "LwFPlugin": Case(lambda s: LwFPlugin(), "ok", **_t("prev_model", "lwf")),
    "LFLPlugin": Case(lambda s: LFLPlugin(1.0), "ok", fill=fill_teacher("prev_model"), **_t("prev_model")),
    "FeatureDistillationPlugin": Case(lambda s: FeatureDistillationPlugin(), "ok",
                                      fill={"lora": fill_teacher("prev_model")}, **_t("prev_model")),
    "ICaRLLossPlugin": Case(lambda s: ICaRLLossPlugin(), "ok", fill=fill_icarl_loss, **_t("old_model")),
    "EarlyStoppingPlugin": Case(lambda s: EarlyStoppingPlugin(5, "test_stream"), "ok", kind="best",
                                fill=fill_early_stopping, after=es_dropped),  # (keeps its state between epochs)
    # ---- no per-sample data
    "LRSchedulerPlugin": Case(lambda s: LRSchedulerPlugin(torch.optim.lr_scheduler.StepLR(s.optimizer, 1)), "ok",
                              kind="none"),
    "TrainGeneratorAfterExpPlugin": Case(lambda s: TrainGeneratorAfterExpPlugin(), "ok", kind="none", fill=nothing),
    "CurrentDataNCMUpdate": Case(lambda s: CurrentDataNCMUpdate(), "ok", kind="none", fill=nothing),
    "CurrentDataFeCAMUpdate": Case(lambda s: CurrentDataFeCAMUpdate(), "ok", kind="none", fill=nothing),
    "MaskedCrossEntropy": Case(lambda s: MaskedCrossEntropy(), "ok", kind="none", fill=nothing),
    # ---- importances: recomputed when the forgotten rows lie in the last experience only
    "EWCPlugin": Case(lambda s: EWCPlugin(1.0), "last", kind="importance", after=ewc_recomputed),
    "EWCPlugin(online, kept)": Case(lambda s: EWCPlugin(1.0, mode="online", decay_factor=0.5,
                                                        keep_importance_data=True), "last", kind="importance",
                                    after=ewc_recomputed),
    # ---- refused once trained
    "EWCPlugin(online)": Case(lambda s: EWCPlugin(1.0, mode="online", decay_factor=0.5), "refuse"),
    "MASPlugin": Case(lambda s: MASPlugin(), "refuse"),  # two experiences (one: test_mas_after_one_experience)
    "SynapticIntelligencePlugin": Case(lambda s: SynapticIntelligencePlugin(1.0), "refuse",
                                       fill={"sharded": lambda p, s, w: p.before_training_exp(s)}),
    "GSS_greedyPlugin": Case(lambda s: GSS_greedyPlugin(mem_size=100, input_size=[64]), "refuse",
                             refuse={"sharded": "ok"}),  # the sharded strategy never runs its hooks: holds nothing
    "FromScratchTrainingPlugin": Case(lambda s: FromScratchTrainingPlugin(), "refuse"),
    "ReplayPlugin+ParametricBuffer(herding)": Case(
        lambda s: ReplayPlugin(200, storage_policy=ParametricBuffer(
            200, selection_strategy=HerdingSelectionStrategy(s.model, "base_model.2"))), "refuse"),
    "ReplayPlugin+ClassBalancedBufferWithLogits": Case(
        lambda s: ReplayPlugin(200, storage_policy=ClassBalancedBufferWithLogits(200)), "refuse", fill=fill_storage),
    "RWalkPlugin": Case(lambda s: RWalkPlugin(), "refuse", fill=lambda p, s, w: p.before_training(s)),
    "CoPEPlugin": Case(lambda s: CoPEPlugin(mem_size=100, n_classes=10, p_size=10), "refuse", fill=fill_storage),
    "BiCPlugin": Case(lambda s: BiCPlugin(mem_size=100), "refuse", fill=fill_storage),
    "CWRStarPlugin": Case(lambda s: CWRStarPlugin(s.model), "refuse",
                          fill=lambda p, s, w: p.model.saved_weights.update({0: torch.ones(3)})),
    "GenerativeReplayPlugin": Case(lambda s: GenerativeReplayPlugin(untrained_solver=False), "refuse", fill=nothing),
    "_ICaRLPlugin": Case(lambda s: _ICaRLPlugin(50), "refuse", fill=lambda p, s, w: p.x_memory.append(w.x[:3].clone())),
    "_ExpertGatePlugin": Case(lambda s: _ExpertGatePlugin(), "refuse", fill=nothing),
    "PackNetPlugin": Case(lambda s: PackNetPlugin(post_prune_epochs=1), "refuse", fill=nothing),
    "MemoryNCMUpdate": Case(lambda s: MemoryNCMUpdate(100), "refuse", fill=fill_storage),
    "NCMOracle": Case(lambda s: NCMOracle(), "refuse", fill=fill_datasets),
    "MemoryFeCAMUpdate": Case(lambda s: MemoryFeCAMUpdate(100), "refuse", fill=fill_storage),
    "FeCAMOracle": Case(lambda s: FeCAMOracle(), "refuse", fill=fill_datasets),
}


def names_in(group: str) -> list[str]:
    return [n for n, c in CASES.items() if c.group == group]


def with_plugins(strategy: str, world: World, names: list[str], **kw):
    """One strategy trained on both experiences holding every named plugin (filled ones after training)."""
    s = build(strategy, world, evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]), **kw)
    plugins = {n: CASES[n].make(s) for n in names}
    trained = [plugins[n] for n in names if CASES[n].filler(strategy) is None]
    s.plugins[0:0] = trained  # where a constructor puts user plugins
    for e in world.exps:
        s.train(e)
    for n in names:
        fill = CASES[n].filler(strategy)
        if fill is not None:
            s.plugins.insert(0, plugins[n])
            fill(plugins[n], s, world)
    labels = {id(o): lbl for lbl, o in labelled(s.plugins)}
    return s, plugins, {n: labels[id(p)] for n, p in plugins.items()}


def snapshot(s) -> tuple:
    """What a refused request must leave untouched: every live tensor's bytes and the records."""
    ledger = json.dumps(s.model.ledger.state_dict(), sort_keys=True, default=str)  # first: it folds pending charges
    return (ledger, live_blob(s), json.dumps(s.audit_log, default=str), s.registry.ids.tolist(),
            s.forgotten_ids.tolist())


def adapter_tensors(s) -> list[bytes]:
    """Every adapter tensor the strategy holds: live adapters and, sharded, every stage checkpoint."""
    states = [s.model.adapter_state_dict(n) for n in s.model.adapter_names]
    states += [c for st in getattr(s, "shards", {}).values() for c in st.checkpoints]
    return [t.detach().contiguous().numpy().tobytes() for sd in states for t in sd.values()]


def changed_tensors(before: list[bytes], s) -> list[bytes]:
    """Tensors of adapters the request retrained or dropped: they learned the forgotten rows."""
    now = b"\0".join(adapter_tensors(s))
    return [t for t in before if t not in now]


def switched_off(mp, names: list[str], plugins: dict, what: str) -> None:
    """Switch off the purge (or check) of the handlers of ``names``, and of optimiser state and gradients."""
    for n in names:
        h = HOLDERS.handler_for(plugins[n])
        mp.setattr(h, "_purge" if what == "purge" else "_check", None)
    if what == "purge":
        mp.setattr(OptimizerState, "forget_purge", lambda self, ctx: {})
        mp.setattr(Gradients, "forget_purge", lambda self, ctx: {})


# ------------------------------------------------------------------ runs shared by the test items
@pytest.fixture(scope="module")
def ok_runs(world, tmp_path_factory):
    """Per strategy: plugins purged on every request, trained together; the three requests; then the control."""
    out = {}
    for strategy in STRATEGIES:
        names = names_in("ok")
        s, plugins, labels = with_plugins(strategy, world, names)
        assert plugins["EarlyStoppingPlugin"].best_state is not None  # something to drop
        res = {"labels": labels, "after": {n: [] for n in names}, "rows_in_plugin": {n: 0 for n in names},
               "listed": {n: 0 for n in names}, "fingerprints": [], "state_left": 0,
               "class_sets": {n: 0 for n in names}, "class_left": {n: 0 for n in names}}
        for req in world.requests:
            pre = adapter_tensors(s)
            rec = s.forget(signed(req))
            if strategy == "sharded":
                res["fingerprints"] += changed_tensors(pre, s)
            rows = forgotten_rows(world, s)
            for n, p in plugins.items():
                res["rows_in_plugin"][n] += found(live_blob(p), rows)
                sets = class_sets(p)
                res["class_sets"][n] += len(sets)
                if req.kind == "classes":  # a class with no retained row leaves every class set
                    res["class_left"][n] += sum(c in cs for c in req.classes for cs in sets)
                res["listed"][n] += labels[n] in rec["purged"]["holders"]
                if CASES[n].after is not None:
                    try:
                        CASES[n].after(p, s, world)
                    except AssertionError as e:
                        res["after"][n].append(f"{req.kind}: {e}")
            res["state_left"] += sum(bool(o.state) for o in OptimizerState(s).optimizers())
            res["state_left"] += sum(q.grad is not None for q in s.model.parameters())
        res["final"] = final_search(s, world, res["fingerprints"], tmp_path_factory.mktemp(f"ok-{strategy}"))

        # the control: the same run with every one of these purges switched off, one owner request
        with pytest.MonkeyPatch.context() as mp:
            c, cplugins, _ = with_plugins(strategy, world, names)
            switched_off(mp, names, cplugins, "purge")
            pre = adapter_tensors(c)
            c.forget(signed(world.requests[2]))
            fps = changed_tensors(pre, c) if strategy == "sharded" else []
            rows = forgotten_rows(world, c)
            ctl = {"rows_in_plugin": {n: found(live_blob(p), rows) for n, p in cplugins.items()},
                   "fingerprints_in_plugin": {n: found(live_blob(p), fps) for n, p in cplugins.items()},
                   "teacher_differs": {n: not adapters_equal(CASES[n].get_teacher(p), c.model)
                                       for n, p in cplugins.items() if CASES[n].kind == "teacher"},
                   "best_state_kept": cplugins["EarlyStoppingPlugin"].best_state is not None,
                   "state_left": sum(bool(o.state) for o in OptimizerState(c).optimizers())
                   + sum(q.grad is not None for q in c.model.parameters())}
            for n in ("AGEMPlugin", "MIRPlugin"):  # with the purge off they keep generators: no pickle
                c.plugins.remove(cplugins[n])
            ctl["final"] = final_search(c, world, fps, tmp_path_factory.mktemp(f"ok-control-{strategy}"))
        res["control"] = ctl
        out[strategy] = res
    return out


def final_search(s, world: World, fingerprints: list[bytes], folder) -> dict:
    """Forgotten rows and retrained/dropped adapter tensors in a pickle, a checkpoint and live tensors."""
    rows = forgotten_rows(world, s)
    assert rows
    save_checkpoint(s, str(folder / "ckpt.pkl"))
    blobs = {"pickle": pickled(s), "checkpoint": (folder / "ckpt.pkl").read_bytes(), "live tensors": live_blob(s)}
    assert blobs["pickle"] is not None
    return {where: (found(b, rows), found(b, fingerprints)) for where, b in blobs.items()}


@pytest.fixture(scope="module")
def last_runs(world, tmp_path_factory):
    """Per strategy: EWC (separate, online keeping the earlier importance) honours the sample and class requests,
    refuses the owner request; the control keeps the importances when the purge is off."""
    out = {}
    names = names_in("last")
    for strategy in STRATEGIES:
        s, plugins, labels = with_plugins(strategy, world, names, noise=False)
        res = {"after": {n: [] for n in names}, "refused": None, "fingerprints": []}
        for req in world.requests:
            if req.kind == "owner":
                before = snapshot(s)
                with pytest.raises(ForgetRefused) as e:
                    s.forget(signed(req))
                res["refused"] = (str(e.value), snapshot(s) == before)
                continue
            pre = adapter_tensors(s)
            s.forget(signed(req))
            if strategy == "sharded":
                res["fingerprints"] += changed_tensors(pre, s)
            for n, p in plugins.items():
                try:
                    CASES[n].after(p, s, world)
                except AssertionError as err:
                    res["after"][n].append(f"{req.kind}: {err}")
        res["labels"] = labels
        res["final"] = final_search(s, world, res["fingerprints"], tmp_path_factory.mktemp(f"last-{strategy}"))
        with pytest.MonkeyPatch.context() as mp:
            c, cplugins, _ = with_plugins(strategy, world, names, noise=False)
            switched_off(mp, names, cplugins, "purge")
            last = len(world.exps) - 1
            old = {n: {k: v.data.clone() for k, v in p.importances[last].items()} for n, p in cplugins.items()}
            pre = adapter_tensors(c)
            c.forget(signed(world.requests[0]))
            fps = changed_tensors(pre, c) if strategy == "sharded" else []
            res["control"] = {
                "importances_kept": {n: all(torch.equal(p.importances[last][k].data, v) for k, v in old[n].items())
                                     for n, p in cplugins.items()},
                "fingerprints_in_plugin": {n: found(live_blob(p), fps) for n, p in cplugins.items()}}
        out[strategy] = res
    return out


@pytest.fixture(scope="module")
def refuse_runs(world):
    """Per strategy: one strategy trained with every refusing plugin; each tried alone on all three requests;
    then, with its check switched off, a request it refused goes through."""
    out = {}
    for strategy in STRATEGIES:
        # plugins honoured here go last: their requests change the strategy
        names = sorted(names_in("refuse"), key=lambda n: CASES[n].refuse.get(strategy) == "ok")
        s, plugins, labels = with_plugins(strategy, world, names)
        others = [p for p in s.plugins if all(p is not q for q in plugins.values())]
        res = {}
        _, _, ids, owners = dataset_tensors(world.exps[0].dataset)  # controls: samples no request names
        for k, n in enumerate(names):
            s.plugins = [plugins[n]] + others
            r = {"outcomes": [], "unchanged": True}
            for req in world.requests:
                before = snapshot(s)
                try:
                    s.forget(signed(req))
                    r["outcomes"].append("ok")
                except ForgetRefused as e:
                    r["outcomes"].append("refused" if type(plugins[n]).__name__ in str(e) else f"other: {e}")
                    r["unchanged"] &= snapshot(s) == before
            with pytest.MonkeyPatch.context() as mp:  # the control: its check off
                h = HOLDERS.handler_for(plugins[n])
                mp.setattr(h, "_check", None)
                mp.setattr(h, "_purge", None)
                try:
                    s.forget(signed(ForgetRequest(requester=int(owners[-1 - k]), sample_ids=(int(ids[-1 - k]),))))
                    r["control"] = "honoured"
                except ForgetRefused as e:
                    r["control"] = f"refused: {e}"
            res[n] = r
        out[strategy] = res
    return out


# ------------------------------------------------------------------ the matrix
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", names_in("ok"))
def test_plugin_purged_on_every_request(name, strategy, ok_runs):
    run, case = ok_runs[strategy], CASES[name]
    assert run["after"][name] == [], run["after"][name]
    assert run["rows_in_plugin"][name] == 0, "forgotten rows left in the plugin"
    assert run["class_left"][name] == 0, "a forgotten class is left in the plugin's class set"
    ctl = run["control"]
    if case.kind == "rows":
        assert run["listed"][name] > 0, "the record does not say what it purged"
        assert ctl["rows_in_plugin"][name] > 0, "control: with its purge off the search finds nothing"
    elif case.kind == "teacher":
        assert ctl["teacher_differs"][name], "control: with its purge off the teacher is the model anyway"
        if strategy == "sharded":
            assert ctl["fingerprints_in_plugin"][name] > 0, "control: the dropped adapter is not in its teacher"
    elif case.kind == "best":
        assert ctl["best_state_kept"]
        if strategy == "sharded":
            assert ctl["fingerprints_in_plugin"][name] > 0
    else:  # holds nothing per sample: never listed, nothing to find
        assert run["listed"][name] == 0 and ctl["rows_in_plugin"][name] == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_nothing_of_the_forgotten_data_is_left_in_pickle_checkpoint_or_live_tensors(strategy, ok_runs, last_runs):
    for run in (ok_runs[strategy], last_runs[strategy]):
        for where, (rows, adapters) in run["final"].items():
            assert rows == 0, f"forgotten rows in the {where}"
            assert adapters == 0, f"a retrained or dropped adapter in the {where}"
        if strategy == "sharded":
            assert run["fingerprints"], "no adapter changed: the adapter search had nothing to look for"
    run = ok_runs[strategy]
    assert run["state_left"] == 0, "optimiser moments or gradients left after a request"
    ctl = run["control"]
    for where, (rows, adapters) in ctl["final"].items():  # the same searches find them with the purges off
        assert rows > 0, f"control: nothing found in the {where}"
        if strategy == "sharded":
            assert adapters > 0, f"control: no dropped adapter in the {where}"
    assert ctl["state_left"] > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_class_sets_were_checked(strategy, ok_runs):
    """Plugins that keep class sets (class-balanced buffers, LwF, iCaRL's loss) were among those checked."""
    have = [n for n, k in ok_runs[strategy]["class_sets"].items() if k]
    assert {"ReplayPlugin+ClassBalancedBuffer", "ReplayPlugin+ParametricBuffer", "GDumbPlugin", "LwFPlugin",
            "ICaRLLossPlugin"} <= set(have), have


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", names_in("last"))
def test_importance_recomputed_for_the_last_experience_refused_for_earlier(name, strategy, last_runs):
    run = last_runs[strategy]
    assert run["after"][name] == [], run["after"][name]
    msg, unchanged = run["refused"]
    assert run["labels"][name] in msg and "experience(s) [0]" in msg and unchanged
    assert run["control"]["importances_kept"][name], "control: with its purge off the importances are not the old"
    if strategy == "sharded":
        assert run["control"]["fingerprints_in_plugin"][name] > 0, "control: old parameters not in saved_params"


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", names_in("refuse"))
def test_plugin_refused_with_nothing_changed(name, strategy, refuse_runs):
    r, case = refuse_runs[strategy][name], CASES[name]
    if case.refuse.get(strategy) == "ok":
        assert r["outcomes"] == ["ok"] * 3
        return
    assert r["outcomes"] == ["refused"] * 3, r["outcomes"]
    assert r["unchanged"], "a refused request changed something"
    assert r["control"] == "honoured", r["control"]


def test_every_stock_plugin_is_in_the_matrix():
    """Every plugin and storage policy class Avalanche 0.6 defines has a handler and a case here."""
    import importlib
    import inspect
    import pkgutil

    import avalanche
    from avalanche.core import BasePlugin
    from avalanche.training.storage_policy import ExemplarsBuffer

    stock = set()
    for m in pkgutil.walk_packages(avalanche.__path__, "avalanche."):
        try:
            mod = importlib.import_module(m.name)
        except ImportError:  # optional extras (ffcv, lvis, gym, ctrl, timm) are not installed
            continue
        for _, c in inspect.getmembers(mod, inspect.isclass):
            if c.__module__ == mod.__name__ and (issubclass(c, BasePlugin) or issubclass(c, ExemplarsBuffer)):
                stock.add(c)
    abstract = {"BasePlugin", "BaseSGDPlugin", "SupervisedPlugin", "SupervisedMetaLearningPlugin",
                "ExemplarsBuffer", "BalancedExemplarsBuffer"}
    handled = {c.__name__ for c in stock if c.__name__ not in abstract
               and any(h.applies(_instance_stub(c)) for h in HOLDERS.handlers())}
    missing = sorted(c.__name__ for c in stock if c.__name__ not in abstract and c.__name__ not in handled)
    assert missing == [], f"no forget handler for {missing}"
    # in every strategy (Clock, PeriodicEval, EvaluationPlugin), inside a case (LwF's method, the default and
    # grouped buffers), or loggers that keep aggregates only (CSV and W&B need a folder or an account)
    implicit = {"Clock", "PeriodicEval", "EvaluationPlugin", "LearningWithoutForgetting", "ExperienceBalancedBuffer",
                "_ParametricSingleBuffer", "InteractiveLogger", "TextLogger", "CSVLogger", "WandBLogger"}
    in_matrix = {n.split("+")[-1].split("(")[0] for n in CASES} | implicit
    assert sorted(handled - in_matrix) == []
    assert all(t for t in treatments().values()), "every handler says what it does"


def _instance_stub(cls):
    """An instance without running ``__init__`` (handlers match on the exact type)."""
    return cls.__new__(cls)


# ------------------------------------------------------------------ the rest of the contract
@pytest.fixture(scope="module")
def trained(world):
    s = build("sharded", world)
    for e in world.exps:
        s.train(e)
    return s


class _Unknown(SupervisedPlugin):
    pass


class _Declared(SupervisedPlugin):
    forget_holds_no_data = True


class _SelfPurging(SupervisedPlugin):
    """A user's plugin that keeps rows by id and purges itself."""

    def __init__(self):
        super().__init__()
        self.kept = {}

    def after_training_exp(self, strategy, **kwargs):
        x, _, ids, _ = dataset_tensors(strategy.experience.dataset)
        self.kept.update({int(i): r.clone() for i, r in zip(ids[:50], x[:50])})

    def forget_check(self, ctx):
        if not self.kept:
            raise ForgetRefused("nothing learned yet")

    def forget_purge(self, ctx):
        gone = [i for i in self.kept if bool(ctx.is_forgotten([i]))]
        for i in gone:
            del self.kept[i]
        return {"rows_removed": len(gone)} if gone else {}


@pytest.mark.parametrize("make, why", [
    (lambda: _Unknown(), "no forget handler knows"),
    (lambda: EvaluationPlugin(ImagesSamplePlugin(mode="train", n_cols=2, n_rows=2), loggers=[]), "sample images"),
    (lambda: EvaluationPlugin(WeightCheckpoint(), loggers=[]), "model weights"),
], ids=["unknown plugin", "ImagesSamplePlugin", "WeightCheckpoint"])
def test_unknown_or_data_keeping_holders_are_refused_before_anything_changes(make, why, trained, world):
    s, plugin = trained, make()
    s.plugins.insert(0, plugin)
    try:
        before = snapshot(s)
        with pytest.raises(ForgetRefused, match=why):
            s.forget(signed(world.requests[0]))
        assert snapshot(s) == before
    finally:
        s.plugins.remove(plugin)


def test_a_users_plugin_opts_in_by_declaring_or_purging_itself(world):
    s = build("sharded", world)
    mine, declared = _SelfPurging(), _Declared()
    s.plugins[0:0] = [mine, declared]
    for e in world.exps:
        s.train(e)
    x, _, ids, owners = dataset_tensors(world.exps[0].dataset)
    victims = ids[:5]  # kept by the plugin (its first 50 of experience 0)
    assert found(live_blob(mine), row_bytes(x[:5])) == 5
    rec = s.forget(signed(ForgetRequest(requester="controller", sample_ids=tuple(victims.tolist()))))
    assert rec["purged"]["holders"]["_SelfPurging"] == {"rows_removed": 5}
    assert "_Declared" not in rec["purged"]["holders"]
    assert found(live_blob(mine), row_bytes(x[:5])) == 0


def test_mas_after_one_experience_is_recomputed(world):
    """With one experience MAS's importance is that experience's: recomputed on the retained rows."""
    s = build("lora", world, noise=False)
    p = MASPlugin()
    s.plugins.insert(0, p)
    s.train(world.exps[0])
    x, y, ids, owners = dataset_tensors(world.exps[0].dataset)
    old = {k: v.data.clone() for k, v in p.importance.items()}
    victims = ids[owners == 1][:10]
    rec = s.forget(signed(ForgetRequest(requester=1, sample_ids=tuple(victims.tolist()))))
    assert rec["purged"]["holders"]["MASPlugin"]["importances_recomputed"] == [0]
    keep = ~torch.isin(ids, victims)
    ds = tensor_dataset(x[keep], y[keep], sample_ids=ids[keep], owners=owners[keep])
    import types
    want = p._get_importance(types.SimpleNamespace(model=s.model, optimizer=s.optimizer, device=s.device,
                                                   train_mb_size=s.train_mb_size,
                                                   experience=types.SimpleNamespace(dataset=ds)))
    assert all(torch.equal(p.importance[k].data, want[k].data) for k in want)
    assert any(not torch.equal(p.importance[k].data, old[k]) for k in old)
    assert all(torch.equal(p.params[k].data, q.data) for k, q in s.model.named_parameters())


def _without(world: World, ids: torch.Tensor) -> list:
    """The experiences as they would have been without the samples ``ids``."""
    out = []
    for e in world.exps:
        _, _, eids, _ = dataset_tensors(e.dataset)
        keep = torch.nonzero(~torch.isin(eids, ids)).flatten().tolist()
        e2 = copy.copy(e)
        e2.dataset = e.dataset.subset(keep)
        out.append(e2)
    return out


@pytest.mark.parametrize("kind", ["samples", "owner"])
def test_lwf_teacher_after_an_exact_request_is_the_never_trained_teacher(kind, world):
    """Sharded (exact) unlearning: the purged LwF teacher is bit for bit the one training without the data leaves
    (for an owner request: without the dropped adapter)."""
    req = next(r for r in world.requests if r.kind == kind)
    s = build("sharded", world, plugins=[LwFPlugin()])
    for e in world.exps:
        s.train(e)
    rec = s.forget(signed(req))
    assert rec["purged"]["holders"]["LwFPlugin"]["teacher_replaced"] == 1
    never = build("sharded", world, plugins=[LwFPlugin()])
    for e in _without(world, s.forgotten_ids):
        never.train(e)
    assert adapters_equal(s.plugins[0].lwf.prev_model, never.plugins[0].lwf.prev_model)
    if kind == "owner":
        assert "shard3" not in s.plugins[0].lwf.prev_model.adapter_names


@pytest.mark.parametrize("purge", [True, False], ids=["purged", "control: holders' purge off"])
def test_an_old_checkpoint_reapplies_requests_to_its_plugins_too(purge, world, tmp_path, monkeypatch):
    """Loading a checkpoint written before a request re-applies it: the plugins the checkpoint brings back (a
    replay buffer, GEM's memory) are purged as the request purged them."""
    from avalanche_rm.strategies import maybe_load_checkpoint
    from avalanche_rm.strategies.forgetting import ForgetMixin
    from avalanche_rm.unlearning import AuditKey

    key = AuditKey.generate()

    def make():
        return build("sharded", world, plugins=[ReplayPlugin(200), GEMPlugin(32, 0.5)],
                     audit_path=tmp_path / "audit.jsonl", audit_key=key)

    s = make()
    for e in world.exps:
        s.train(e)
    old = tmp_path / "old.pkl"
    save_checkpoint(s, str(old))
    s.forget(signed(world.requests[2]))
    rows = forgotten_rows(world, s)
    assert found(old.read_bytes(), rows) > 0  # the old checkpoint holds them
    if not purge:
        monkeypatch.setattr(ForgetMixin, "purge_holders", staticmethod(lambda checked, ctx: {}))
    r, _ = maybe_load_checkpoint(make(), str(old))
    rec = r.audit_log[-1]
    assert rec["event"] == "reapply"
    if purge:
        assert {"ReplayPlugin", "GEMPlugin"} <= set(rec["purged"]["holders"])
        assert found(live_blob(r), rows) == 0 and found(pickled(r), rows) == 0
    else:
        assert found(live_blob(r), rows) > 0
