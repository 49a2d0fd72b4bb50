"""The registry of learned data: who owns what, who may ask to forget it, and its removal.

A strategy (or a Flower client) keeps the samples it has learned and not
forgotten, because exact unlearning retrains from them and approximate
unlearning needs the retained set. A request is authorised and resolved to
sample ids *before* anything changes; :meth:`DataRegistry.remove` drops the rows
for good (the tensors are rebuilt without them, nothing keeps the old ones).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .auth import Principal
from .requests import ForgetRefused, ForgetRequest


def dataset_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, sample_ids, owners)`` of an Avalanche dataset built by :func:`avalanche_rm.benchmarks.tensor_dataset`."""
    if not hasattr(dataset, "sample_ids") or not hasattr(dataset, "owners"):
        raise ValueError("dataset needs 'sample_ids' and 'owners' attributes (see benchmarks.tensor_dataset)")
    xs, ys = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        xs.append(item[0])
        ys.append(int(item[1]))
    x = torch.stack(xs) if xs else torch.zeros(0)
    return (x, torch.tensor(ys, dtype=torch.long), torch.tensor([int(v) for v in dataset.sample_ids]),
            torch.tensor([int(v) for v in dataset.owners]))


@dataclass
class DataRegistry:
    """Samples learned and not forgotten (kept in the digital host, never on the analogue cells)."""

    x: torch.Tensor | None = None
    y: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    ids: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    owners: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def add(self, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, owners: torch.Tensor) -> None:
        if not (len(x) == len(y) == len(ids) == len(owners)):
            raise ValueError(f"registry rows differ in length: x {len(x)}, y {len(y)}, ids {len(ids)}, "
                             f"owners {len(owners)}")
        dup = torch.isin(ids, self.ids)
        if bool(dup.any()):
            raise ValueError(f"sample ids already learned: {ids[dup][:10].tolist()}")
        self.x = x.clone() if self.x is None else torch.cat([self.x, x])
        self.y = torch.cat([self.y, y])
        self.ids = torch.cat([self.ids, ids])
        self.owners = torch.cat([self.owners, owners])

    def add_experience(self, experience) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, ids, owners = dataset_tensors(experience.dataset)
        self.add(x, y, ids, owners)
        return x, y, ids, owners

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.isin(self.ids, ids)

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Row of each of ``ids`` (in the order given); ``ValueError`` naming any id not registered."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        order = torch.argsort(self.ids)
        where = torch.searchsorted(self.ids[order], ids).clamp_max(max(len(self.ids) - 1, 0))
        rows = order[where] if len(self.ids) else where
        bad = (self.ids[rows] != ids) if len(self.ids) else torch.ones_like(ids, dtype=torch.bool)
        if bool(bad.any()):
            raise ValueError(f"sample ids not registered: {ids[bad][:10].tolist()}")
        return rows

    def take(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of ``ids`` in the order given."""
        rows = self.positions(ids)
        return self.x[rows], self.y[rows]

    def split(self, forget_ids: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        m = self.mask(forget_ids)
        return (self.x[m], self.y[m]), (self.x[~m], self.y[~m])

    def remove(self, ids: torch.Tensor) -> int:
        """Drop the rows of ``ids``; returns how many went."""
        keep = ~self.mask(ids)
        n = int((~keep).sum())
        if self.x is not None:
            self.x = self.x[keep].clone()
        self.y, self.ids, self.owners = self.y[keep].clone(), self.ids[keep].clone(), self.owners[keep].clone()
        return n

    # ------------------------------------------------------------ authorisation
    def resolve(self, request: ForgetRequest, principal: Principal) -> torch.Tensor:
        """Sample ids a request covers; raises :class:`ForgetRefused` (nothing changes) if it is not allowed.

        ``principal`` is who the request's signature proves it comes from
        (:meth:`KeyDirectory.verify`), never the request's own word: an owner
        may forget its own samples or all of its data; a data controller may
        forget anything, and only a controller may forget whole classes.
        Unknown or already forgotten ids are refused.
        """
        if not isinstance(request, ForgetRequest):
            raise ForgetRefused(f"expected a ForgetRequest, got {type(request).__name__}")
        if not isinstance(principal, Principal):
            raise ForgetRefused(f"request {request.request_id}: no verified principal (got {principal!r})")
        rid = request.request_id
        if request.kind == "samples":
            ids = torch.tensor(request.sample_ids, dtype=torch.long)
            known = torch.isin(ids, self.ids)
            if not bool(known.all()):
                raise ForgetRefused(f"request {rid}: unknown or already forgotten sample ids {ids[~known][:10].tolist()}")
            owners = self.owners[self.mask(ids)]
            if not principal.is_controller and bool((owners != principal.owner).any()):
                raise ForgetRefused(f"request {rid}: {principal} does not own all of the named samples")
            return ids
        if request.kind == "owner":
            if not principal.is_controller and principal.owner != request.owner:
                raise ForgetRefused(f"request {rid}: {principal} may not forget owner {request.owner}'s data")
            ids = self.ids[self.owners == request.owner]
            if len(ids) == 0:
                raise ForgetRefused(f"request {rid}: owner {request.owner} has no learned data")
            return ids
        if not principal.is_controller:
            raise ForgetRefused(f"request {rid}: class-level forgetting needs a data controller's signature, not "
                                f"{principal}'s")
        ids = self.ids[torch.isin(self.y, torch.tensor(request.classes, dtype=torch.long))]
        if len(ids) == 0:
            raise ForgetRefused(f"request {rid}: no learned samples of classes {request.classes}")
        return ids
