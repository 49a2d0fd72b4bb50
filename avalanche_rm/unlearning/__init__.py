"""Machine unlearning on hybrid chips: one core for Avalanche strategies and Flower clients.

- :mod:`.requests`: :class:`ForgetRequest`, :class:`ForgetRefused`;
- :mod:`.auth`: :class:`SigningKey`, :class:`SignedRequest`, :class:`KeyDirectory`, :class:`Principal`;
- :mod:`.registry`: the learned data, authorisation and removal;
- :mod:`.audit`: tamper-evident logs (:class:`AuditLog`: ids and a keyed digest, never the data;
  :class:`AuditKey`; :func:`verify_log`);
- :mod:`.store`: :class:`ForgottenStore`, the durable record of what was forgotten (replays, checkpoints);
- :mod:`.objectives`: approximate-unlearning objectives by name (a new method is one registration);
- :mod:`.methods`: the training loop that runs an objective;
- :mod:`.attacks`: loss-threshold, SVC and LiRA membership inference;
- :mod:`.metrics`: UA / RA / TA / MIA-efficacy and the gap to retraining;
- :mod:`.core`: :class:`ForgetCore`, the one path every request takes.
"""
from .attacks import LiRA, accuracy_of, mia, predict_proba
from .audit import AuditKey, AuditLog, ChainedLog, VerifyResult, data_digest, verify_log
from .auth import KeyDirectory, Principal, PublicKey, SignedRequest, SigningKey, generate_keys
from .core import ForgetCore
from .methods import stop_accuracy, train_objective
from .metrics import gap_to_retrain, unlearning_row, verify
from .objectives import Objective, ObjectiveContext, get_objective, objective_names, register_objective, weighted_ce
from .registry import DataRegistry, dataset_tensors
from .requests import ForgetRefused, ForgetRequest
from .store import ForgottenStore

__all__ = ["AuditKey", "AuditLog", "ChainedLog", "DataRegistry", "ForgetCore", "ForgetRefused", "ForgetRequest",
           "ForgottenStore", "KeyDirectory", "LiRA", "Objective", "ObjectiveContext", "Principal", "PublicKey",
           "SignedRequest", "SigningKey", "VerifyResult", "accuracy_of", "data_digest", "dataset_tensors",
           "gap_to_retrain", "generate_keys", "get_objective", "mia", "objective_names", "predict_proba", "register_objective",
           "stop_accuracy", "train_objective", "unlearning_row", "verify", "verify_log", "weighted_ce"]
