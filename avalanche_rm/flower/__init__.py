"""Flower glue: hybrid-chip ClientApps, an adapter-only FedAvg that forgets clients, an in-process Grid."""
from .client import ADAPTER, ClientData, adapter_model, adapter_record, make_client_app
from .forget import DROP, EXACT, FederatedForgetRequest
from .grid import InProcessGrid
from .server import (AdapterFedAvg, FederationResult, audit_line, make_server_app, partition_map,
                     run_federation)

__all__ = ["ADAPTER", "DROP", "EXACT", "AdapterFedAvg", "ClientData", "FederatedForgetRequest", "FederationResult",
           "InProcessGrid", "adapter_model", "adapter_record", "audit_line", "make_client_app", "make_server_app",
           "partition_map", "run_federation"]
