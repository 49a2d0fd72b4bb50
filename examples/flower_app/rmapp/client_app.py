"""ClientApp: one simulated hybrid chip per SuperNode (digits partition = the node's owner).

Each chip programs the public base with its own variability, calibrates its ADCs
on public data, and trains 3 adapter shards so that a sample-level forget request
can be honoured exactly (method ``"exact"``). It honours only requests signed by
its owner: ``$RMAPP_KEYS/trust.json`` holds the owners' public keys (run.sh and
deploy.sh make one with ``avalanche-rm keys init``); without it the app does not start.
"""
import os
from pathlib import Path

from avalanche_rm.flower import make_client_app
from avalanche_rm.flower.digits_fl import base_fn, calibration_fn, data_fn
from avalanche_rm.hardware import get_preset
from avalanche_rm.unlearning import KeyDirectory

if not os.environ.get("RMAPP_KEYS"):
    raise RuntimeError("RMAPP_KEYS is not set: point it at a folder whose trust.json holds each owner's public key "
                       "(`avalanche-rm keys init DIR --audience rmapp --owners 0,1,2`); a client without its owners' "
                       "keys cannot tell their forget requests from anyone else's")
trust = KeyDirectory.load(Path(os.environ["RMAPP_KEYS"]) / "trust.json")
app = make_client_app(base_fn, data_fn, get_preset("paper-180nm"), rank=4, alpha=8.0, local_epochs=1, shards=3,
                      calibration_fn=calibration_fn, trust=trust)
