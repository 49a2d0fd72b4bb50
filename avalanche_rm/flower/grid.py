"""An in-process Flower ``Grid``: the ServerApp's messages go straight to a ClientApp in this process.

For fast tests only: Flower's own engines (the Ray simulation runtime via
``run_simulation`` / ``flwr run``) are what runs federations. Each fake node
keeps its own ``Context`` (so ``Context.state`` persists across rounds exactly
as in a SuperNode); an exception in the ClientApp becomes an ``Error`` reply.
Nodes can be marked offline: messages to them get no reply.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid

SERVER_NODE_ID = 1
_ids = itertools.count(1)


def _set_task_identity(run_id: int, node_id: int) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = node_id
    TaskIdentity.task_id = 0


class InProcessGrid(Grid):
    """``num_nodes`` virtual SuperNodes running ``client_app`` in this process."""

    def __init__(self, client_app, num_nodes: int, run_config: dict | None = None, run_id: int = 1) -> None:
        if num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {num_nodes!r}")
        self.client_app = client_app
        self._run_id = run_id
        self.node_ids = [1000 + i for i in range(num_nodes)]
        self.contexts = {
            nid: Context(run_id=run_id, node_id=nid, node_config={"partition-id": i, "num-partitions": num_nodes},
                         state=RecordDict(), run_config=dict(run_config or {}))
            for i, nid in enumerate(self.node_ids)
        }
        self.offline: set[int] = set()
        self._inbox: dict[str, Message] = {}
        _set_task_identity(run_id, SERVER_NODE_ID)

    # -- Grid API
    def set_run(self, run_id: int) -> None:
        self._run_id = run_id

    @property
    def run(self):
        return self._run_id

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.node_ids if n not in self.offline]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            mid = f"m{next(_ids)}"
            msg.metadata.__dict__["_message_id"] = mid
            nid = msg.metadata.dst_node_id
            if nid in self.offline or nid not in self.contexts:
                continue
            _set_task_identity(self._run_id, nid)
            try:
                reply = self.client_app(msg, self.contexts[nid])
            except Exception as e:  # a crashing client must not take the federation down
                reply = Message(Error(code=1, reason=f"{type(e).__name__}: {e}"), reply_to=msg)
            finally:
                _set_task_identity(self._run_id, SERVER_NODE_ID)
            self._inbox[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._inbox.pop(m) for m in list(message_ids) if m in self._inbox]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))
