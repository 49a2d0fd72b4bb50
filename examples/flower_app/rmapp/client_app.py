"""ClientApp: one simulated hybrid chip per SuperNode (digits partition = the node's owner).

Each chip programs the public base with its own variability, calibrates its ADCs
on public data, and trains 3 adapter shards so that a sample-level forget request
can be honoured exactly (method ``"exact"``).
"""
from avalanche_rm.flower import make_client_app
from avalanche_rm.flower.digits_fl import base_fn, calibration_fn, data_fn
from avalanche_rm.hardware import get_preset

app = make_client_app(base_fn, data_fn, get_preset("paper-180nm"), rank=4, alpha=8.0, local_epochs=1, shards=3,
                      calibration_fn=calibration_fn)
