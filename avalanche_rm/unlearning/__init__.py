"""Machine unlearning on hybrid chips: one core for Avalanche strategies and Flower clients.

- :mod:`.requests`: :class:`ForgetRequest`, :class:`ForgetRefused`;
- :mod:`.auth`: :class:`SigningKey`, :class:`SignedRequest`, :class:`KeyDirectory`, :class:`Principal`;
- :mod:`.registry`: the learned data, authorisation and removal;
- :mod:`.methods`: every unlearning method by name, its kind and guarantee;
- :mod:`.objectives`: approximate-unlearning objectives by name (a new method is one registration);
- :mod:`.approximate`: the training loop that runs an objective, and where it stops;
- :mod:`.sisa`: exact unlearning on sharded adapters (SISA);
- :mod:`.judge`: whether an approximate request did what it promised;
- :mod:`.audit`: tamper-evident logs (:class:`AuditLog`: ids and a keyed digest, never the data;
  :class:`AuditKey`; :func:`verify_log`);
- :mod:`.store`: :class:`ForgottenStore`, the durable record of what was forgotten (replays, checkpoints);
- :mod:`.attacks`: loss-threshold, SVC and LiRA membership inference, with their power;
- :mod:`.metrics`: UA / RA / TA / MIA-efficacy and the gap to retraining;
- :mod:`.holders`: what a learner keeps besides model and registry, each purged or the request refused;
- :mod:`.core`: :class:`ForgetCore`, the one path every request takes.
"""
from .approximate import run_approximate, stop_accuracy, train_objective
from .attacks import LiRA, accuracy_of, auc_interval, format_auc, mia, predict_proba, wilson_interval
from .audit import AuditKey, AuditLog, ChainedLog, VerifyResult, data_digest, verify_log
from .auth import KeyDirectory, Principal, PublicKey, SignedRequest, SigningKey, generate_keys
from .core import ForgetCore
from .holders import HOLDERS, ForgetContext, HolderHandler, HolderRegistry
from .judge import ForgetFailed, ForgetFlagged, JudgePolicy, judge
from .methods import Method, check_method, get_method, method_names, register_method
from .metrics import gap_to_retrain, unlearning_row, verify
from .objectives import Objective, ObjectiveContext, get_objective, objective_names, register_objective, weighted_ce
from .registry import DataRegistry, dataset_tensors
from .requests import ForgetRefused, ForgetRequest
from .sisa import ShardedAdapters, weighted_average
from .store import ForgottenStore

__all__ = ["HOLDERS", "AuditKey", "AuditLog", "ChainedLog", "DataRegistry", "ForgetContext", "ForgetCore",
           "ForgetFailed", "ForgetFlagged", "ForgetRefused", "ForgetRequest", "ForgottenStore", "HolderHandler", "HolderRegistry",
           "JudgePolicy", "KeyDirectory", "LiRA", "Method", "Objective",
           "ObjectiveContext", "Principal", "PublicKey", "ShardedAdapters", "SignedRequest", "SigningKey",
           "VerifyResult", "accuracy_of", "auc_interval", "check_method", "data_digest", "dataset_tensors",
           "format_auc", "gap_to_retrain", "generate_keys", "get_method", "get_objective", "judge", "method_names",
           "mia", "objective_names", "predict_proba", "register_method", "register_objective", "run_approximate",
           "stop_accuracy", "train_objective", "unlearning_row", "verify", "verify_log", "weighted_average",
           "weighted_ce", "wilson_interval"]
