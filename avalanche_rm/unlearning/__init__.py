"""Machine unlearning on hybrid chips: one core for Avalanche strategies and Flower clients.

- :mod:`.requests`: :class:`ForgetRequest`, :class:`ForgetRefused`;
- :mod:`.registry`: the learned data, authorisation and removal;
- :mod:`.methods`: every unlearning method by name, its kind and guarantee;
- :mod:`.objectives`: approximate-unlearning objectives by name (a new method is one registration);
- :mod:`.approximate`: the training loop that runs an objective, and where it stops;
- :mod:`.sisa`: exact unlearning on sharded adapters (SISA);
- :mod:`.judge`: whether an approximate request did what it promised;
- :mod:`.audit`: the audit log (ids and a keyed digest, never the data);
- :mod:`.attacks`: loss-threshold, SVC and LiRA membership inference, with their power;
- :mod:`.metrics`: UA / RA / TA / MIA-efficacy and the gap to retraining;
- :mod:`.core`: :class:`ForgetCore`, the one path every request takes.
"""
from .approximate import run_approximate, stop_accuracy, train_objective
from .attacks import LiRA, accuracy_of, auc_interval, format_auc, mia, predict_proba, wilson_interval
from .audit import AuditLog, data_digest
from .core import ForgetCore
from .judge import ForgetFailed, JudgePolicy, judge
from .methods import Method, check_method, get_method, method_names, register_method
from .metrics import gap_to_retrain, unlearning_row, verify
from .objectives import Objective, ObjectiveContext, get_objective, objective_names, register_objective, weighted_ce
from .registry import DataRegistry, dataset_tensors
from .requests import ForgetRefused, ForgetRequest
from .sisa import ShardedAdapters, weighted_average

__all__ = ["AuditLog", "DataRegistry", "ForgetCore", "ForgetFailed", "ForgetRefused", "ForgetRequest", "JudgePolicy",
           "LiRA", "Method", "Objective", "ObjectiveContext", "ShardedAdapters", "accuracy_of", "auc_interval",
           "check_method", "data_digest", "dataset_tensors", "format_auc", "gap_to_retrain", "get_method",
           "get_objective", "judge", "method_names", "mia", "objective_names", "predict_proba", "register_method",
           "register_objective", "run_approximate", "stop_accuracy", "train_objective", "unlearning_row", "verify",
           "weighted_average", "weighted_ce", "wilson_interval"]
