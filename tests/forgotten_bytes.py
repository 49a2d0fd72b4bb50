"""Search for forgotten rows' exact bytes in a pickle, a checkpoint and every live tensor reachable from an object.

Forgotten inputs are float rows: a row's 4-byte floats, in order, are found
verbatim wherever a copy of it is kept (a tensor, a pickled dataset, a view's
whole source storage). Shared by the unlearning and holder tests.
"""
from __future__ import annotations

import collections
import types
import weakref

import dill
import numpy as np
import torch


def row_bytes(x: torch.Tensor) -> list[bytes]:
    """The bytes of each row of ``x`` as float32 (how the datasets store them)."""
    return [row.contiguous().numpy().tobytes() for row in x.detach().cpu().to(torch.float32)]


def found(blob: bytes, rows: list[bytes]) -> int:
    """How many of ``rows`` occur verbatim in ``blob``."""
    return sum(1 for r in rows if r in blob)


_ATOMS = (str, bytes, bytearray, int, float, complex, bool, type(None), type, types.ModuleType, range,
          types.BuiltinFunctionType, torch.dtype, torch.device, torch.Size)


def reachable_tensors(root) -> list:
    """Every tensor (with its ``.grad``) and numpy array reachable from ``root`` through attributes, containers,
    closures, bound methods, generator frames and weak references (not module globals or classes)."""
    out, seen, stack = [], {}, [root]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, _ATOMS):
            continue
        seen[id(o)] = o  # held until the walk ends: a freed temporary's id could be reused
        if isinstance(o, torch.Tensor):
            out.append(o)
            if o.grad is not None:
                stack.append(o.grad)
            continue
        if isinstance(o, np.ndarray):
            out.append(o)
            continue
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset, collections.deque, weakref.WeakSet)):
            stack.extend(list(o))
        elif isinstance(o, weakref.ref):
            stack.append(o())
        elif isinstance(o, types.GeneratorType):
            if o.gi_frame is not None:
                stack.extend(o.gi_frame.f_locals.values())
        elif isinstance(o, types.MethodType):
            stack.append(o.__self__)
            stack.append(o.__func__)
        elif isinstance(o, types.FunctionType):
            stack.extend(c.cell_contents for c in (o.__closure__ or ()) if _filled(c))
            stack.extend(o.__defaults__ or ())
        elif isinstance(o, types.CellType):
            if _filled(o):
                stack.append(o.cell_contents)
        d = getattr(o, "__dict__", None)
        if isinstance(d, dict):
            stack.extend(d.values())
        for slot in getattr(type(o), "__slots__", ()) or ():
            if isinstance(slot, str) and hasattr(o, slot):
                stack.append(getattr(o, slot))
    return out


def _filled(cell) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def live_blob(root) -> bytes:
    """The bytes of every storage behind the tensors reachable from ``root`` (a view's whole storage)."""
    parts, storages = [], set()
    for t in reachable_tensors(root):
        if isinstance(t, np.ndarray):
            parts.append(t.tobytes())
            continue
        if t.is_sparse or t.device.type == "meta":
            continue
        st = t.detach().untyped_storage()
        key = (st.data_ptr(), st.nbytes())
        if key in storages:
            continue
        storages.add(key)
        parts.append(torch.empty(0, dtype=torch.uint8).set_(st.cpu()).numpy().tobytes())
    return b"\0".join(parts)


def pickled(obj) -> bytes | None:
    """``dill.dumps(obj)`` as checkpoints pickle (``recurse``), or ``None`` if it cannot be pickled."""
    dill.settings["recurse"] = True
    try:
        return dill.dumps(obj)
    except (TypeError, dill.PicklingError, AttributeError):
        return None
