"""Forget handlers for every plugin Avalanche 0.6 ships, its storage policies, optimisers and gradients.

Each handler (see :mod:`avalanche_rm.unlearning.holders` for the contract)
either purges a holder so that it keeps what training without the forgotten
data would have left, or refuses the request, naming the plugin, before
anything changes. ``treatment`` of each handler says which and why;
:func:`treatments` lists them. The rules in short:

- rows kept by sample id (replay storage policies, A-GEM) or by content (GEM)
  are removed; what is left is a uniform random sample of the retained rows,
  which is what these random-selection memories hold when trained without
  the forgotten ones (in distribution: the draws themselves would differ);
- a teacher copied from the model after the last experience (LwF, LFL,
  feature distillation, iCaRL's loss) becomes a copy of the model after the
  request: for exact strategies that is the model training without the data
  ends with, for approximate ones the teacher then distils the forgotten state;
- an importance computed from one experience's data at the model after it
  (EWC; MAS after one experience) is recomputed by the plugin's own function
  on the retained rows, when the forgotten rows lie in the last experience;
- whatever integrates the training trajectory (SI, RWalk, CoPE's prototypes,
  MAS's running average), or was learned from stored samples (BiC's bias
  layer, a generator, DER's logits, NCM means) cannot be reconstructed: refused;
- gradients and optimiser moments are cleared: both strategies here reset
  them before any later use, so clearing changes nothing but the data kept.

Requires the strategy to register its experiences with
:meth:`~avalanche_rm.strategies.forgetting.ForgetMixin.register_experience`
(it records each experience's sample ids, so an experience's retained rows
can be rebuilt from the registry).
"""
from __future__ import annotations

import contextlib
import copy
import types

import torch
from avalanche.benchmarks.utils.data_loader import GroupBalancedInfiniteDataLoader
from avalanche.evaluation.metrics.checkpoint import WeightCheckpoint
from avalanche.evaluation.metrics.images_samples import ImagesSamplePlugin
from avalanche.logging import CSVLogger, InteractiveLogger, TensorboardLogger, TextLogger, WandBLogger
from avalanche.models.packnet import PackNetPlugin
from avalanche.training.losses import ICaRLLossPlugin, MaskedCrossEntropy
from avalanche.training.plugins import (AGEMPlugin, BiCPlugin, CoPEPlugin, CWRStarPlugin, EarlyStoppingPlugin,
                                        EvaluationPlugin, EWCPlugin, FeatureDistillationPlugin,
                                        FromScratchTrainingPlugin, GDumbPlugin, GEMPlugin, GenerativeReplayPlugin,
                                        GSS_greedyPlugin, LFLPlugin, LRSchedulerPlugin, LwFPlugin, MASPlugin,
                                        MIRPlugin, RARPlugin, ReplayPlugin, RWalkPlugin, SynapticIntelligencePlugin,
                                        TrainGeneratorAfterExpPlugin)
from avalanche.training.plugins.clock import Clock
from avalanche.training.plugins.update_fecam import CurrentDataFeCAMUpdate, FeCAMOracle, MemoryFeCAMUpdate
from avalanche.training.plugins.update_ncm import CurrentDataNCMUpdate, MemoryNCMUpdate, NCMOracle
from avalanche.training.regularization import LearningWithoutForgetting
from avalanche.training.storage_policy import (ClassBalancedBuffer, ExperienceBalancedBuffer, ParametricBuffer,
                                               RandomExemplarsSelectionStrategy, ReservoirSamplingBuffer,
                                               _ParametricSingleBuffer)
from avalanche.training.supervised.der import ClassBalancedBufferWithLogits
from avalanche.training.supervised.expert_gate import _ExpertGatePlugin
from avalanche.training.supervised.icarl import _ICaRLPlugin
from avalanche.training.templates.base_sgd import PeriodicEval
from avalanche.training.utils import ParamData, copy_params_dict, freeze_everything

from ..benchmarks.digits import tensor_dataset
from ..evaluation import HardwareCostMetric, HardwareCSVLogger, TrainableParamsMetric, UnlearningMetrics
from ..unlearning.holders import HOLDERS, ForgetContext, HolderHandler, labelled, refuse, speaks_for_itself
from ..unlearning.requests import ForgetRefused
from .full_weight import _ReprogramAfterExperience
from .plugins import HardwareCostPlugin, SeenClassesMask, WriteBackPlugin


# ================================================================== helpers
def _name(obj) -> str:
    return type(obj).__name__


def _trained_experiences(strategy) -> int:
    clock = getattr(strategy, "clock", None)
    return int(clock.train_exp_counter) if clock is not None else 0


def _learned(strategy) -> list:
    """``[(sample_ids, task_label)]`` of every experience the strategy registered, in training order."""
    return list(getattr(strategy, "learned_experiences", None) or [])


def forgotten_experiences(strategy, ctx: ForgetContext) -> set[int]:
    """Indices (training order) of the experiences that hold any of the forgotten samples."""
    return {k for k, (ids, _) in enumerate(_learned(strategy)) if bool(torch.isin(ids, ctx.ids).any())}


def retained_experience(strategy, k: int, ctx: ForgetContext):
    """Experience ``k``'s retained rows as a dataset, in the order the experience held them."""
    ids, task = _learned(strategy)[k]
    reg = strategy.registry
    keep = ids[~torch.isin(ids, ctx.ids) & torch.isin(ids, reg.ids)]
    x, y = reg.take(keep)
    pos = {int(i): j for j, i in enumerate(reg.ids.tolist())}
    owners = reg.owners[torch.tensor([pos[int(i)] for i in keep], dtype=torch.long)]
    return tensor_dataset(x, y, task_label=task, sample_ids=keep, owners=owners)


def retained_classes(strategy, ctx: ForgetContext) -> set[int]:
    reg = strategy.registry
    return {int(c) for c in torch.unique(reg.y[~torch.isin(reg.ids, ctx.ids)]).tolist()}


def _require_history(strategy) -> None:
    """Per-experience state can be matched to registered experiences only if every trained one was registered."""
    n, k = _trained_experiences(strategy), len(_learned(strategy))
    if n != k:
        refuse(f"keeps state of {n} trained experiences but the strategy registered {k}: which of them the "
               "forgotten rows shaped is unknown")


@contextlib.contextmanager
def _charged(strategy):
    """Work a purge does on the chip (recomputing an importance) is charged to the ``unlearn`` phase."""
    ledger = getattr(getattr(strategy, "model", None), "ledger", None)
    if ledger is None:
        yield
        return
    with ledger.phase("unlearn"):
        yield


def _clear_grads(model) -> int:
    n = 0
    for p in model.parameters():
        if p.grad is not None:
            p.grad = None
            n += 1
    return n


def fresh_copy(model):
    """A copy of ``model`` without gradients (deepcopy keeps ``.grad``, which holds the last batch's data)."""
    c = copy.deepcopy(model)
    _clear_grads(c)
    return c


def materialized_subset(dataset, keep):
    from .forgetting import materialized_subset as _m  # forgetting imports this module: bind late

    return _m(dataset, [int(k) for k in keep])


# ================================================================== storage policies
def _group_buffers(policy) -> list:
    groups = getattr(policy, "buffer_groups", None)
    return list(groups.values()) if groups is not None else [policy]


def _check_rows_have_ids(policy) -> None:
    for g in _group_buffers(policy):
        ds = g.buffer
        if ds is not None and len(ds) and not hasattr(ds, "sample_ids"):
            refuse(f"keeps samples in {_name(policy)} without 'sample_ids': the forgotten ones cannot be "
                   "found in it; build datasets with benchmarks.tensor_dataset")


def _sources(ds, out: dict) -> None:
    """The base tensor datasets behind an Avalanche dataset (its subsets and concatenations are views of them)."""
    flat = getattr(ds, "_flat_data", None)
    if flat is not None:
        for d in getattr(flat, "_datasets", ()):
            _sources(d, out)
    elif getattr(ds, "tensors", None):
        out[id(ds)] = ds
    else:
        for d in getattr(ds, "_datasets", None) or getattr(ds, "datasets", None) or ():
            _sources(d, out)


def forgotten_rows_behind(datasets, ctx: ForgetContext) -> int:
    """Forgotten rows in the tensors a set of datasets keeps alive (a view of an experience holds all of it)."""
    src: dict = {}
    for ds in datasets:
        if ds is not None:
            _sources(ds, src)
    return sum(int(ctx.matches(d.tensors[0], d.tensors[1] if len(d.tensors) > 1 else None).sum())
               for d in src.values())


def _purge_group(group, ctx: ForgetContext) -> int:
    ds = group.buffer
    if ds is None or len(ds) == 0:
        return 0
    gone = ctx.is_forgotten(ds.sample_ids)
    keep = torch.nonzero(~gone).flatten()
    # rebuilt even when nothing of it is forgotten: Avalanche's subsets are views of the whole source tensor
    group.buffer = materialized_subset(ds, keep)
    w = getattr(group, "_buffer_weights", None)
    if w is not None and len(w) == len(gone):
        group._buffer_weights = w[keep].clone()
    return int(gone.sum())


def _drop_empty_class_groups(policy, seen: set, strategy, ctx) -> list[int]:
    """Class groups emptied by the purge whose class has no retained row: never-trained would not have them."""
    still = retained_classes(strategy, ctx)
    dropped = [c for c, g in policy.buffer_groups.items() if len(g.buffer) == 0 and int(c) not in still]
    for c in dropped:
        del policy.buffer_groups[c]
        seen.discard(c)
    return sorted(int(c) for c in dropped)


def _removed(n: int, reachable: int) -> dict:
    """``rows_removed``: forgotten samples the holder served; ``forgotten_rows_reachable``: forgotten rows its
    tensors kept alive (those and the rest of any experience a view still referenced); empty if neither."""
    out = {}
    if n:
        out["rows_removed"] = n
    if reachable:
        out["forgotten_rows_reachable"] = reachable
    return out


def _purge_policy_rows(policy, ctx) -> dict:
    groups = _group_buffers(policy)
    reachable = forgotten_rows_behind([g.buffer for g in groups], ctx)
    return _removed(sum(_purge_group(g, ctx) for g in groups), reachable)


def _purge_class_balanced(policy, ctx) -> dict:
    out = _purge_policy_rows(policy, ctx)
    dropped = _drop_empty_class_groups(policy, policy.seen_classes, ctx.host, ctx)
    if dropped:
        out["classes_dropped"] = dropped
    return out


def _check_parametric(policy, ctx) -> None:
    sel = policy.selection_strategy
    if type(sel) is not RandomExemplarsSelectionStrategy and len(policy.buffer):
        refuse(f"chose its exemplars with {_name(sel)}, from features of every sample including "
               "the forgotten ones: which retained rows it would keep cannot be reconstructed")
    _check_rows_have_ids(policy)


def _purge_parametric(policy, ctx) -> dict:
    out = _purge_policy_rows(policy, ctx)
    if getattr(policy, "groupby", None) == "class":
        dropped = _drop_empty_class_groups(policy, policy.seen_groups, ctx.host, ctx)
        if dropped:
            out["classes_dropped"] = dropped
    return out


_SAMPLE_NOTE = ("the rows left are a uniform random sample of the retained rows, which is what this random-selection "
                "memory holds when trained without the forgotten ones (in distribution; the draws would differ); "
                "the freed capacity refills at the next update")

for _types, _purge, _extra in (
        ((ReservoirSamplingBuffer, ExperienceBalancedBuffer), _purge_policy_rows, ""),
        ((ClassBalancedBuffer,), _purge_class_balanced, "; a class with no retained row leaves its seen classes"),
):
    HOLDERS.register(HolderHandler(
        _types[0].__name__, _types, check=lambda p, ctx: _check_rows_have_ids(p), purge=_purge,
        treatment="forgotten rows removed by sample id, every buffer rebuilt from copies; " + _SAMPLE_NOTE + _extra))
HOLDERS.register(HolderHandler(
    "ParametricBuffer", (ParametricBuffer, _ParametricSingleBuffer), check=_check_parametric, purge=_purge_parametric,
    treatment="with random selection: as the reservoir buffers; with a feature-based selection (herding, "
              "closest-to-centre) refused: the choice depended on the forgotten rows' features"))


def _check_der(policy, ctx) -> None:
    if len(policy.buffer):
        refuse("stores logits of its rows computed by the model as it was, after learning the "
               "forgotten samples; re-deriving them needs that model trained without them")


HOLDERS.register(HolderHandler("ClassBalancedBufferWithLogits", (ClassBalancedBufferWithLogits,), check=_check_der,
                               treatment="refused once it holds rows: DER's stored logits came from a model that "
                                         "learned the forgotten samples"))


def _inner(obj):
    """The handler of a holder inside a plugin (its storage policy, its LwF method); refuses an unknown kind."""
    h = HOLDERS.handler_for(obj)
    if h is None:
        refuse(f"is of a kind ({type(obj).__module__}.{type(obj).__qualname__}) no forget handler knows: "
               "register one")
    return h


def _check_inner(plugin, obj, ctx) -> None:
    try:
        _inner(obj).check(obj, ctx)
    except ForgetRefused as e:
        raise ForgetRefused(f"its {_name(obj)} {e}") from None


def _check_storage(plugin, ctx) -> None:
    _check_inner(plugin, plugin.storage_policy, ctx)


def _purge_storage(plugin, ctx) -> dict:
    pol = plugin.storage_policy
    return _inner(pol).purge(pol, ctx)


# ================================================================== replay-type plugins
class _LoaderIter:
    """An endless iterator over a loader, restarted when it ends, that pickles unstarted.

    A-GEM keeps a live iterator of its buffer loader and MIR a ``cycle``
    generator of its replay loader; a generator cannot be pickled, so a
    strategy holding one cannot be checkpointed. The purge rebuilds them as this.
    """

    def __init__(self, loader) -> None:
        self._loader = loader
        self._it = None

    def __iter__(self):
        return self

    def __next__(self):
        if self._it is None:
            self._it = iter(self._loader)
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self._loader)
            return next(self._it)

    def __getstate__(self) -> dict:
        return {"_loader": self._loader, "_it": None}


def _purge_mir(plugin, ctx) -> dict:
    out = _purge_storage(plugin, ctx)
    if plugin.replay_loader is not None:
        # rebuilt as MIR's after_training_exp builds it (without the classes of the last minibatch)
        from avalanche.benchmarks.utils.utils import concat_datasets

        mb = getattr(ctx.host, "mbatch", None)
        last = set(torch.unique(mb[1]).tolist()) if mb is not None else set()
        groups = plugin.storage_policy.buffer_groups
        buf = concat_datasets([g.buffer for k, g in groups.items() if int(k) not in last])
        plugin.replay_loader = (_LoaderIter(torch.utils.data.DataLoader(buf, batch_size=plugin.subsample, shuffle=True))
                                if len(buf) > plugin.batch_size_mem else None)
        out["replay_loader_rebuilt"] = 1
    return out


def _purge_rar(plugin, ctx) -> dict:
    out = _purge_storage(plugin, ctx)
    dropped = 0
    for attr in ("replay_loader", "iter_replay"):
        if getattr(plugin, attr, None) is not None:
            setattr(plugin, attr, None)  # RAR rebuilds them in before_training_exp, before any read
            dropped += 1
    if dropped:
        out["loaders_dropped"] = dropped
    return out


def _check_gdumb(plugin, ctx) -> None:
    _check_storage(plugin, ctx)
    init = plugin.init_model
    if init is not None and (not hasattr(init, "adapter_names") or init.adapter_names):
        refuse("keeps an initial model that may have learned from data (only a hybrid model "
               "without adapters is known to hold nothing private)")


HOLDERS.register(HolderHandler("ReplayPlugin", (ReplayPlugin,), check=_check_storage, purge=_purge_storage,
                               treatment="its storage policy purged (see the policies)"))
HOLDERS.register(HolderHandler("GDumbPlugin", (GDumbPlugin,), check=_check_gdumb, purge=_purge_storage,
                               treatment="class-balanced buffer purged; its initial model is the programmed base "
                                         "before any adapter (checked), which holds no private data"))
HOLDERS.register(HolderHandler("MIRPlugin", (MIRPlugin,), check=_check_storage, purge=_purge_mir,
                               treatment="class-balanced buffer purged; its replay loader rebuilt from the purged "
                                         "buffer as MIR builds it"))
HOLDERS.register(HolderHandler("RARPlugin", (RARPlugin,), check=_check_storage, purge=_purge_rar,
                               treatment="reservoir buffer purged; its loaders dropped (rebuilt before any read)"))


# ---- GEM: rows kept without sample ids, found by content
def _check_gem(plugin, ctx) -> None:
    for t, mx in plugin.memory_x.items():
        if len(mx) and bool(ctx.matches(mx, plugin.memory_y[t]).all()):
            refuse(f"memory of experience {t} holds only forgotten rows: GEM cannot run on an "
                   "empty memory and refilling it needs rows it never kept")


def _purge_gem(plugin, ctx) -> dict:
    n = 0
    for t in list(plugin.memory_x):
        gone = ctx.matches(plugin.memory_x[t], plugin.memory_y[t])
        if bool(gone.any()):
            keep = ~gone
            plugin.memory_x[t] = plugin.memory_x[t][keep].clone()
            plugin.memory_y[t] = plugin.memory_y[t][keep].clone()
            plugin.memory_tid[t] = plugin.memory_tid[t][keep].clone()
            n += int(gone.sum())
    out = {"rows_removed": n} if n else {}
    if plugin.G.numel():
        plugin.G = torch.empty(0)  # reference gradients are recomputed before every use
        out["reference_gradients_dropped"] = 1
    return out


HOLDERS.register(HolderHandler("GEMPlugin", (GEMPlugin,), check=_check_gem, purge=_purge_gem,
                               treatment="memory rows matching a forgotten row bit for bit (input and label) "
                                         "removed; reference gradients dropped (recomputed before every use); "
                                         "refused if a memory would be left empty"))


# ---- A-GEM: buffers are subsets (views) of each experience
def _check_agem(plugin, ctx) -> None:
    for k, ds in enumerate(plugin.buffers):
        if len(ds) and not hasattr(ds, "sample_ids"):
            refuse("keeps samples without 'sample_ids'; build datasets with benchmarks.tensor_dataset")
        if len(ds) and bool(ctx.is_forgotten(ds.sample_ids).all()):
            refuse(f"buffer {k} holds only forgotten rows: A-GEM cannot sample an empty buffer")


def _purge_agem(plugin, ctx) -> dict:
    n, reachable = 0, forgotten_rows_behind(plugin.buffers, ctx)
    for k, ds in enumerate(plugin.buffers):
        gone = ctx.is_forgotten(ds.sample_ids)
        plugin.buffers[k] = materialized_subset(ds, torch.nonzero(~gone).flatten())  # a view keeps the source
        n += int(gone.sum())
    out = _removed(n, reachable)
    if plugin.buffers:
        # its loader and live iterator hold the old buffers: rebuilt as update_memory builds them
        plugin.buffer_dataloader = GroupBalancedInfiniteDataLoader(
            plugin.buffers, batch_size=plugin.sample_size // len(plugin.buffers), num_workers=0, pin_memory=False,
            persistent_workers=False)
        plugin.buffer_dliter = _LoaderIter(plugin.buffer_dataloader)
        out["loader_rebuilt"] = 1
    if plugin.reference_gradients.numel():
        plugin.reference_gradients = torch.empty(0)  # recomputed before every use
        out["reference_gradients_dropped"] = 1
    return out


HOLDERS.register(HolderHandler("AGEMPlugin", (AGEMPlugin,), check=_check_agem, purge=_purge_agem,
                               treatment="forgotten rows removed by sample id from every buffer (rebuilt from "
                                         "copies), its loader and iterator rebuilt, reference gradients dropped; "
                                         "the buffers were random subsets, so what is left is a random subset of "
                                         "the retained rows; refused if a buffer would be left empty"))


# ================================================================== teachers
def _keep_retained_classes(classes, strategy, ctx) -> list[int]:
    still = retained_classes(strategy, ctx)
    gone = sorted(int(c) for c in classes if int(c) not in still)
    return gone


def _purge_lwf_method(lwf, ctx) -> dict:
    out = {}
    if lwf.prev_model is not None:
        lwf.prev_model = fresh_copy(ctx.host.model)
        out["teacher_replaced"] = 1
    dropped = set()
    for task, classes in lwf.prev_classes_by_task.items():
        gone = _keep_retained_classes(classes, ctx.host, ctx)
        classes.difference_update(gone)
        dropped.update(gone)
    if dropped:
        out["classes_dropped"] = sorted(dropped)
    return out


_TEACHER = ("teacher (copied from the model after the last experience) replaced by a copy of the model after the "
            "request: for exact strategies what training without the data ends with, for approximate ones the "
            "unlearned model, so distillation cannot bring the forgotten state back")

HOLDERS.register(HolderHandler("LearningWithoutForgetting", (LearningWithoutForgetting,), purge=_purge_lwf_method,
                               treatment=_TEACHER + "; classes with no retained row leave its distilled units"))
HOLDERS.register(HolderHandler("LwFPlugin", (LwFPlugin,),
                               check=lambda p, ctx: _check_inner(p, p.lwf, ctx),
                               purge=lambda p, ctx: _purge_lwf_method(p.lwf, ctx),
                               treatment="its LearningWithoutForgetting: " + _TEACHER))


def _purge_lfl(plugin, ctx) -> dict:
    if plugin.prev_model is None:
        return {}
    plugin.prev_model = fresh_copy(ctx.host.model)
    freeze_everything(plugin.prev_model)
    return {"teacher_replaced": 1}


def _purge_feature_distillation(plugin, ctx) -> dict:
    if plugin.prev_model is None:
        return {}
    plugin.prev_model = fresh_copy(ctx.host.model)
    if hasattr(plugin.prev_model, "features"):
        plugin.prev_model.features = None  # as the plugin stores it
    return {"teacher_replaced": 1}


def _purge_icarl_loss(plugin, ctx) -> dict:
    out = {}
    if plugin.old_model is not None:
        plugin.old_model = fresh_copy(ctx.host.model)
        out["teacher_replaced"] = 1
    if plugin.old_logits is not None:
        plugin.old_logits = None  # logits of the last minibatch
        out["logits_dropped"] = 1
    gone = _keep_retained_classes(plugin.old_classes, ctx.host, ctx)
    if gone:
        plugin.old_classes = [c for c in plugin.old_classes if int(c) not in gone]
        out["classes_dropped"] = gone
    return out


HOLDERS.register(HolderHandler("LFLPlugin", (LFLPlugin,), purge=_purge_lfl, treatment=_TEACHER + " (frozen)"))
HOLDERS.register(HolderHandler("FeatureDistillationPlugin", (FeatureDistillationPlugin,),
                               purge=_purge_feature_distillation, treatment=_TEACHER))
HOLDERS.register(HolderHandler("ICaRLLossPlugin", (ICaRLLossPlugin,), purge=_purge_icarl_loss,
                               treatment=_TEACHER + "; last logits dropped; classes with no retained row dropped"))


# ================================================================== importances
def _check_last_experience_only(plugin, ctx) -> int:
    """The one experience (the last) whose importance may be recomputed; refuses otherwise."""
    s = ctx.host
    _require_history(s)
    last = _trained_experiences(s) - 1
    hit = forgotten_experiences(s, ctx)
    if hit - {last}:
        refuse(f"keeps importances and parameters of experience(s) {sorted(hit - {last})}, computed "
               "at models that had learned the forgotten rows; those models are gone, so what training "
               "without them would have left cannot be recomputed")
    return last


def _check_ewc(plugin, ctx) -> None:
    if not plugin.importances and not plugin.saved_params:
        return
    last = _check_last_experience_only(plugin, ctx)
    if plugin.mode == "online" and last > 0 and (last - 1) not in plugin.importances:
        refuse("(online mode) folded the importance of earlier experiences into the last one and "
               "kept no copy: the forgotten rows' share cannot be taken out")


def _purge_ewc(plugin, ctx) -> dict:
    if not plugin.importances and not plugin.saved_params:
        return {}
    s = ctx.host
    last = _trained_experiences(s) - 1
    if last not in forgotten_experiences(s, ctx):
        return {}
    ds = retained_experience(s, last, ctx)
    _clear_grads(s.model)
    with _charged(s):
        imp = plugin.compute_importances(s.model, s._criterion, s.optimizer, ds, s.device, s.train_mb_size)
    if plugin.mode == "online" and last > 0:
        # update_importances' fold (decay * earlier + current), by name: a parameter added since (an unlearning
        # adapter) takes its current importance, where the plugin's own zip would misalign
        prev = plugin.importances[last - 1]
        imp = {k: ParamData(f"imp_{k}", v.shape, device=v.device,
                            init_tensor=plugin.decay_factor * prev[k].expand(v.shape) + v.data) if k in prev else v
               for k, v in imp.items()}
        if not plugin.keep_importance_data:
            del plugin.importances[last - 1]
    plugin.importances[last] = imp
    plugin.saved_params[last] = copy_params_dict(s.model)
    return {"importances_recomputed": [last], "retained_rows": len(ds), "saved_params_replaced": [last]}


HOLDERS.register(HolderHandler("EWCPlugin", (EWCPlugin,), check=_check_ewc, purge=_purge_ewc,
                               treatment="forgotten rows in the last experience only: its importances recomputed "
                                         "with the plugin's own compute_importances over that experience's retained "
                                         "rows (same order and batches) at the model after the request, and its "
                                         "saved parameters replaced by the model's; forgotten rows in an earlier "
                                         "experience (or online mode without the earlier importance kept): refused"))


def _check_mas(plugin, ctx) -> None:
    if plugin.importance is None and plugin.params is None:
        return
    n = _trained_experiences(ctx.host)
    if n != 1:
        refuse(f"importance is a running average over {n} experiences (alpha={plugin.alpha}): the "
               "forgotten rows' share cannot be taken out")
    _check_last_experience_only(plugin, ctx)


def _purge_mas(plugin, ctx) -> dict:
    if plugin.importance is None and plugin.params is None:
        return {}
    s = ctx.host
    ds = retained_experience(s, 0, ctx)
    shim = types.SimpleNamespace(model=s.model, optimizer=s.optimizer, device=s.device,
                                 train_mb_size=s.train_mb_size, experience=types.SimpleNamespace(dataset=ds))
    _clear_grads(s.model)
    with _charged(s):
        plugin.importance = plugin._get_importance(shim)
    plugin.params = dict(copy_params_dict(s.model))
    return {"importances_recomputed": [0], "retained_rows": len(ds), "saved_params_replaced": [0]}


HOLDERS.register(HolderHandler("MASPlugin", (MASPlugin,), check=_check_mas, purge=_purge_mas,
                               treatment="after one experience: importance recomputed with the plugin's own "
                                         "_get_importance over the retained rows at the model after the request, "
                                         "parameters replaced; after more: refused (a running average)"))


def _refuse_if(predicate, why: str):
    def check(plugin, ctx):
        if predicate(plugin, ctx):
            refuse(why)
    return check


def _register_refusal(cls, predicate, why: str, when: str = "once trained") -> None:
    HOLDERS.register(HolderHandler(cls.__name__, (cls,), check=_refuse_if(predicate, why),
                                   treatment=f"refused {when}: {why}; before that it holds nothing"))


_register_refusal(SynapticIntelligencePlugin, lambda p, ctx: bool(p.ewc_data[0]),
                  "its importances integrate the training trajectory over the forgotten samples' updates")
_register_refusal(RWalkPlugin, lambda p, ctx: p.exp_params is not None or bool(getattr(p, "checkpoint_params", {})),
                  "its scores integrate the training trajectory over the forgotten samples' updates")
_register_refusal(CoPEPlugin, lambda p, ctx: len(p.storage_policy.buffer) > 0 or bool(p.tmp_p_mem),
                  "its class prototypes are momentum averages of outputs along training, the forgotten samples' "
                  "included")
_register_refusal(GSS_greedyPlugin, lambda p, ctx: p.ext_mem_list_current_index > 0,
                  "its memory was chosen by gradient similarity to the other rows, the forgotten ones included")
_register_refusal(GenerativeReplayPlugin,
                  lambda p, ctx: not p.untrained_solver or getattr(p, "old_generator", None) is not None,
                  "its generator (and solver copy) learned the forgotten samples")
_register_refusal(BiCPlugin, lambda p, ctx: not p.is_first_experience or len(p.storage_policy.buffer) > 0
                  or bool(p.val_buffer),
                  "its bias-correction layer was trained on stored validation rows that may be forgotten ones")
_register_refusal(CWRStarPlugin, lambda p, ctx: bool(getattr(p.model, "saved_weights", {})),
                  "its consolidated class weights average the weights learned from every experience")
_register_refusal(_ICaRLPlugin, lambda p, ctx: bool(p.x_memory),
                  "its herding exemplars and class means were chosen from every sample's features, the forgotten "
                  "ones included")
_register_refusal(_ExpertGatePlugin, lambda p, ctx: _trained_experiences(ctx.host) > 0,
                  "its experts' autoencoders and LwF teacher learned every experience's data")
_register_refusal(PackNetPlugin, lambda p, ctx: _trained_experiences(ctx.host) > 0,
                  "PackNet freezes the weights each task learned; they cannot be retrained without the data")
_register_refusal(FromScratchTrainingPlugin,
                  lambda p, ctx: p.initial_weights is not None and _trained_experiences(ctx.host) > 1,
                  "its initial-weights snapshot is retaken at every experience and then holds the values other "
                  "parameters learned in earlier ones", when="after more than one experience")
for _cls in (CurrentDataNCMUpdate, MemoryNCMUpdate, NCMOracle, CurrentDataFeCAMUpdate, MemoryFeCAMUpdate, FeCAMOracle):
    _register_refusal(_cls, lambda p, ctx: hasattr(getattr(ctx.host, "model", None), "eval_classifier")
                      or len(getattr(getattr(p, "storage_policy", None), "buffer", ())) > 0
                      or bool(getattr(p, "all_datasets", None)),
                      "the class statistics it wrote into the model's classifier were computed over stored or "
                      "current rows, the forgotten ones included",
                      when="once it holds rows or the model has an NCM/FeCAM classifier")


# ================================================================== nothing per sample
def _purge_early_stopping(plugin, ctx) -> dict:
    if plugin.best_state is None and plugin.best_val is None:
        return {}
    plugin.best_state = plugin.best_val = plugin.best_step = None  # reset at every experience's start
    return {"best_state_dropped": 1}


HOLDERS.register(HolderHandler("EarlyStoppingPlugin", (EarlyStoppingPlugin,), purge=_purge_early_stopping,
                               treatment="best model state and value dropped: the plugin resets them at the start "
                                         "of every experience before any read, so no later step differs"))


def _no_data(*classes, why: str) -> None:
    HOLDERS.register(HolderHandler("/".join(c.__name__ for c in classes), tuple(classes), treatment=why))


_no_data(Clock, PeriodicEval, why="counters and settings only (no sample, statistic or model)")
_no_data(LRSchedulerPlugin, why="a schedule and a running mean of losses (no sample); its optimiser's moments are "
                                "cleared with the strategy's")
_no_data(TrainGeneratorAfterExpPlugin, why="stateless; the generator it trains is refused with GenerativeReplayPlugin")
_no_data(HardwareCostPlugin, WriteBackPlugin, _ReprogramAfterExperience, why="stateless or a step counter")
_no_data(SeenClassesMask, MaskedCrossEntropy,
         why="a set of class labels (no sample); rebuilding it from the retained data is the class-request part of "
             "the unlearning core")
_no_data(InteractiveLogger, TextLogger, CSVLogger, TensorboardLogger, WandBLogger, HardwareCSVLogger,
         why="loggers write the aggregate metrics they are given (see EvaluationPlugin)")

#: metric modules whose metrics hold aggregates only (counts, means, timings, memory): no sample
_AGGREGATE_METRIC_MODULES = {f"avalanche.evaluation.metrics.{m}" for m in (
    "accuracy", "loss", "forgetting_bwt", "forward_transfer", "timing", "ram_usage", "cpu_usage", "gpu_usage",
    "disk_usage", "mac", "confusion_matrix", "class_accuracy", "amca", "topk_acc", "acc_matrix",
    "cumulative_accuracies", "mean_scores", "labels_repartition")}
_AGGREGATE_METRICS = (HardwareCostMetric, TrainableParamsMetric, UnlearningMetrics)
_LOGGERS = (InteractiveLogger, TextLogger, CSVLogger, TensorboardLogger, WandBLogger, HardwareCSVLogger)


def _check_evaluation(plugin, ctx) -> None:
    for m in plugin.metrics:
        if isinstance(m, (ImagesSamplePlugin, WeightCheckpoint)):
            kept = "sample images" if isinstance(m, ImagesSamplePlugin) else "model weights"
            refuse(f"its metric {_name(m)} keeps {kept} in its results and in every logger it fed")
        if not (type(m).__module__ in _AGGREGATE_METRIC_MODULES or type(m) in _AGGREGATE_METRICS
                or getattr(type(m), "forget_holds_no_data", False) is True):
            refuse(f"its metric {type(m).__qualname__} is not known to keep aggregates only: "
                   "give it 'forget_holds_no_data = True' if it keeps no sample")
    for lg in plugin.loggers:
        if type(lg) not in _LOGGERS and not speaks_for_itself(lg):
            refuse(f"its logger {type(lg).__qualname__} is not known to keep aggregates only")


HOLDERS.register(HolderHandler("EvaluationPlugin", (EvaluationPlugin,), check=_check_evaluation,
                               treatment="kept: its metrics are aggregates (accuracy, loss, timing, hardware bill, "
                                         "...; training-time ones averaged the forgotten samples in with the rest); "
                                         "refused with a metric that keeps samples or weights (ImagesSamplePlugin, "
                                         "WeightCheckpoint) or an unknown metric or logger"))


# ================================================================== optimisers and gradients
class OptimizerState:
    """Every optimiser a strategy holds or its model charges: their moments were accumulated from the forgotten data.

    Moments are cleared, not recomputed: the strategies here reset optimiser
    state before any later use (HybridLoRA's ``make_optimizer`` at every
    experience, a new Adam per shard stage), so clearing changes no later step.
    Parameters the request removed from the model (a dropped adapter) are also
    released from every optimiser and from Avalanche's ``optimized_param_id``,
    which would otherwise keep the dropped weights in every checkpoint.
    """

    def __init__(self, strategy) -> None:
        self._s = strategy

    def _models(self) -> list:
        s = self._s
        return [m for m in (getattr(s, "model", None),
                            s.model_for_forgetting() if hasattr(s, "model_for_forgetting") else None) if m is not None]

    def _param_ids(self) -> set[int]:
        return {id(p) for m in self._models() for p in m.parameters()}

    def optimizers(self) -> list:
        s = self._s
        found = [getattr(s, "optimizer", None)]
        for m in self._models():
            found += list(getattr(m, "_attached", None) or [])
        for p in getattr(s, "plugins", []):
            found.append(getattr(getattr(p, "scheduler", None), "optimizer", None))
        out, seen = [], set()
        for o in found:
            if isinstance(o, torch.optim.Optimizer) and id(o) not in seen:
                seen.add(id(o))
                out.append(o)
        return out

    def forget_check(self, ctx) -> None:
        ctx.notes["model_parameter_ids"] = self._param_ids()  # ids only: which parameters existed before

    def forget_purge(self, ctx) -> dict:
        gone = ctx.notes.get("model_parameter_ids", set()) - self._param_ids()
        n_opt = n_state = n_released = 0
        for o in self.optimizers():
            k = sum(1 for v in o.state.values() if v)
            if k:
                n_opt += 1
                n_state += k
            o.state.clear()
            for g in o.param_groups:
                kept = [p for p in g["params"] if id(p) not in gone]
                n_released += len(g["params"]) - len(kept)
                g["params"] = kept
        ids = getattr(self._s, "optimized_param_id", None)
        if isinstance(ids, dict):
            for name in [n for n, p in ids.items() if id(p) in gone]:
                del ids[name]
                n_released += 1
        out = {"optimizers": n_opt, "parameter_states_cleared": n_state} if n_state else {}
        if n_released:
            out["dropped_parameters_released"] = n_released
        return out


class Gradients:
    """The ``.grad`` of every parameter of the strategy's model(s): the last minibatch's gradient (data-derived)."""

    def __init__(self, strategy) -> None:
        self._s = strategy

    def forget_purge(self, ctx) -> dict:
        s = self._s
        seen, n = set(), 0
        for m in (getattr(s, "model", None), s.model_for_forgetting() if hasattr(s, "model_for_forgetting") else None):
            if m is None:
                continue
            for p in m.parameters():
                if id(p) not in seen and p.grad is not None:
                    p.grad = None
                    n += 1
                seen.add(id(p))
        return {"gradients_cleared": n} if n else {}


def strategy_holders(strategy) -> list[tuple[str, object]]:
    """``(label, holder)`` for everything an Avalanche strategy holds besides its model and registry.

    Plugins first (their purges may recompute importances), then optimiser
    state and gradients (cleared last, after any recomputation).
    """
    return labelled(getattr(strategy, "plugins", [])) + [("optimizer_state", OptimizerState(strategy)),
                                                         ("gradients", Gradients(strategy))]


def treatments() -> dict[str, str]:
    """``{handler: what its purge leaves and why, or why it refuses}`` for every registered handler."""
    return {h.name: h.treatment for h in HOLDERS.handlers()}
