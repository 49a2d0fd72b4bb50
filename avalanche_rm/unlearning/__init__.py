"""Machine unlearning on hybrid chips: one core for Avalanche strategies and Flower clients.

- :mod:`.requests`: :class:`ForgetRequest`, :class:`ForgetRefused`;
- :mod:`.registry`: the learned data, authorisation and removal;
- :mod:`.audit`: the audit log (ids and a keyed digest, never the data);
- :mod:`.objectives`: approximate-unlearning objectives by name (a new method is one registration);
- :mod:`.methods`: the training loop that runs an objective;
- :mod:`.attacks`: loss-threshold, SVC and LiRA membership inference;
- :mod:`.metrics`: UA / RA / TA / MIA-efficacy and the gap to retraining;
- :mod:`.holders`: what a learner keeps besides model and registry, each purged or the request refused;
- :mod:`.core`: :class:`ForgetCore`, the one path every request takes.
"""
from .attacks import LiRA, accuracy_of, mia, predict_proba
from .audit import AuditLog, data_digest
from .core import ForgetCore
from .holders import HOLDERS, ForgetContext, HolderHandler, HolderRegistry
from .methods import stop_accuracy, train_objective
from .metrics import gap_to_retrain, unlearning_row, verify
from .objectives import Objective, ObjectiveContext, get_objective, objective_names, register_objective, weighted_ce
from .registry import DataRegistry, dataset_tensors
from .requests import ForgetRefused, ForgetRequest

__all__ = ["HOLDERS", "AuditLog", "DataRegistry", "ForgetContext", "ForgetCore", "ForgetRefused", "ForgetRequest",
           "HolderHandler", "HolderRegistry", "LiRA", "Objective",
           "ObjectiveContext", "accuracy_of", "data_digest", "dataset_tensors", "gap_to_retrain", "get_objective",
           "mia", "objective_names", "predict_proba", "register_objective", "stop_accuracy", "train_objective",
           "unlearning_row", "verify", "weighted_ce"]
