"""Who may forget what: per-principal Ed25519 keys, signed requests and the learner's key directory.

An owner (or a data controller) holds a :class:`SigningKey`; a learner (an
Avalanche strategy, a Flower client) holds only a :class:`KeyDirectory`: the
public keys of the owners (by owner id) and of the data controllers (by name),
and the learner's own name, the *audience* every request must be addressed to.
A :class:`SignedRequest` is signed over its whole canonical content: every
field of the :class:`~avalanche_rm.unlearning.ForgetRequest` (kind, ids, classes
or owner, method and options, requester, its single-use random id), the
audience, the issue time and the signing key's id. :meth:`KeyDirectory.verify`
turns a signed request into a :class:`Principal`, the only thing authorisation
trusts; the ``requester`` field alone proves nothing.

::

    key = SigningKey.generate()                       # owner 2's, kept by owner 2
    trust = KeyDirectory("lab-a").add_owner(2, key.public_key)
    signed = key.sign(ForgetRequest(requester=2, owner=2), audience="lab-a")
    trust.verify(signed)                              # Principal(role='owner', name='owner:2', owner=2)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .requests import ForgetRefused, ForgetRequest

#: how far in the future an issue time may lie (clock skew between owner and learner)
CLOCK_SKEW_S = 300
_SIGNED_VERSION = 1
HOW_TO_SIGN = ("a forget request must be signed by its requester: the owner (or a data controller) holds a "
               "SigningKey and sends key.sign(ForgetRequest(...), audience=<the learner's name>); the learner's "
               "KeyDirectory holds their public keys (see avalanche_rm.unlearning.auth)")


def canonical_json(obj) -> bytes:
    """The one byte form that is signed, MACed and hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def write_private(path: str | Path, text: str) -> Path:
    """Write a secret file atomically, readable by its owner only (0600 from the start)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _read_json(path: str | Path, what: str) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{what} file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} file {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{what} file {str(path)!r} must hold a JSON object")
    return d


class PublicKey:
    """An Ed25519 public key (what a learner holds); ``key_id`` names it in signatures and records."""

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, got {raw!r:.60}")
        self._key = Ed25519PublicKey.from_public_bytes(raw)
        self.raw = raw
        self.key_id = hashlib.sha256(b"avalanche-rm/ed25519/" + raw).hexdigest()[:16]

    @classmethod
    def from_hex(cls, text: str) -> "PublicKey":
        try:
            return cls(bytes.fromhex(text))
        except (TypeError, ValueError):
            raise ValueError(f"not a hex Ed25519 public key: {text!r:.80}") from None

    def hex(self) -> str:
        return self.raw.hex()

    def verifies(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
            return True
        except InvalidSignature:
            return False

    def __eq__(self, other) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.key_id})"

    def __reduce__(self):
        return (PublicKey, (self.raw,))


class SigningKey:
    """An owner's or a data controller's private Ed25519 key: it signs forget requests.

    The key does not say whose it is: the learner's :class:`KeyDirectory` maps
    the requester named in a request to the public key that must verify it.
    A signing key refuses to be pickled (it never lands in a checkpoint by accident).
    """

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._key = private
        self.public_key = PublicKey(private.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(self, request: ForgetRequest, audience: str, issued_at: int | None = None) -> "SignedRequest":
        """Sign ``request`` for the learner (or federation) named ``audience``."""
        if not isinstance(request, ForgetRequest):
            raise ValueError(f"sign() takes a ForgetRequest, got {type(request).__name__}")
        _check_audience(audience)
        t = int(time.time()) if issued_at is None else issued_at
        unsigned = SignedRequest(request, audience, t, self.key_id, "")
        return SignedRequest(request, audience, t, self.key_id, self._key.sign(unsigned.payload()).hex())

    def save(self, path: str | Path) -> Path:
        """Write the key to ``path`` (mode 0600; keep it where only its holder can read it)."""
        return write_private(path, json.dumps({"kind": "avalanche-rm ed25519 signing key",
                                               "key": self._key.private_bytes_raw().hex(),
                                               "key_id": self.key_id}) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "SigningKey":
        d = _read_json(path, "signing key")
        try:
            return cls(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(d["key"])))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"signing key file {str(path)!r} holds no valid Ed25519 key") from None

    def __reduce__(self):
        raise TypeError("a SigningKey is a secret: it is never pickled (save it with .save(path))")

    def __repr__(self) -> str:
        return f"SigningKey({self.key_id})"


def _check_audience(audience) -> None:
    if not isinstance(audience, str) or not audience.strip():
        raise ValueError(f"audience must name the learner or federation (a non-empty string), got {audience!r}")


@dataclass(frozen=True)
class SignedRequest:
    """A forget request, the learner it is addressed to, its issue time and its requester's signature."""

    request: ForgetRequest
    audience: str
    issued_at: int
    key_id: str
    signature: str

    def payload(self) -> bytes:
        """The signed bytes: the whole request, the audience, the issue time and the key id."""
        return canonical_json({"v": _SIGNED_VERSION, "request": self.request.to_dict(), "audience": self.audience,
                               "issued_at": self.issued_at, "key_id": self.key_id})

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def to_dict(self) -> dict:
        return {"request": self.request.to_dict(), "audience": self.audience, "issued_at": self.issued_at,
                "key_id": self.key_id, "signature": self.signature}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping) -> "SignedRequest":
        """Parse an untrusted payload; raises ``ValueError`` on anything malformed (the signature is not checked)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"signed request must be a mapping, got {type(d).__name__}")
        need = {"request", "audience", "issued_at", "key_id", "signature"}
        if set(d) != need:
            raise ValueError(f"signed request needs exactly the fields {sorted(need)}, got {sorted(d)}")
        if isinstance(d["issued_at"], bool) or not isinstance(d["issued_at"], int):
            raise ValueError(f"issued_at must be an int (unix seconds), got {d['issued_at']!r}")
        for k in ("audience", "key_id", "signature"):
            if not isinstance(d[k], str):
                raise ValueError(f"{k} must be a string, got {d[k]!r:.60}")
        return cls(ForgetRequest.from_dict(d["request"]), d["audience"], d["issued_at"], d["key_id"], d["signature"])

    @classmethod
    def from_json(cls, text: str) -> "SignedRequest":
        try:
            d = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"signed request is not valid JSON: {e}") from None
        return cls.from_dict(d)


@dataclass(frozen=True)
class Principal:
    """Who a verified request comes from: an owner (``owner`` = its id) or a data controller (by name)."""

    role: str
    name: str
    owner: int | None = None

    @property
    def is_controller(self) -> bool:
        return self.role == "controller"

    def __str__(self) -> str:
        return self.name


class KeyDirectory:
    """A learner's trust: its own name (the audience) and the public keys of owners and data controllers.

    ``max_age_s`` (optional) also refuses requests issued longer ago than that
    (the durable store refuses replays in any case). It holds public keys only
    and may be pickled, saved and shared.
    """

    def __init__(self, audience: str, max_age_s: float | None = None) -> None:
        _check_audience(audience)
        if max_age_s is not None and not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0 or None, got {max_age_s!r}")
        self.audience = audience
        self.max_age_s = max_age_s
        self.owners: dict[int, PublicKey] = {}
        self.controllers: dict[str, PublicKey] = {}

    def add_owner(self, owner: int, public_key: PublicKey) -> "KeyDirectory":
        if isinstance(owner, bool) or not isinstance(owner, int) or owner < 0:
            raise ValueError(f"owner id must be a non-negative int, got {owner!r}")
        self.owners[owner] = _public(public_key)
        return self

    def add_controller(self, name: str, public_key: PublicKey) -> "KeyDirectory":
        if not isinstance(name, str) or not name:
            raise ValueError(f"controller name must be a non-empty string, got {name!r}")
        self.controllers[name] = _public(public_key)
        return self

    def key_of(self, requester) -> tuple[Principal, PublicKey] | None:
        if isinstance(requester, int) and not isinstance(requester, bool):
            k = self.owners.get(requester)
            return (Principal("owner", f"owner:{requester}", requester), k) if k is not None else None
        k = self.controllers.get(requester)
        return (Principal("controller", f"controller:{requester}"), k) if k is not None else None

    def verify(self, signed, now: float | None = None) -> Principal:
        """The principal a signed request comes from; raises :class:`ForgetRefused` if it is not proven."""
        if isinstance(signed, ForgetRequest):
            raise ForgetRefused(f"request {signed.request_id}: unsigned; {HOW_TO_SIGN}")
        if not isinstance(signed, SignedRequest):
            raise ForgetRefused(f"expected a SignedRequest, got {type(signed).__name__}; {HOW_TO_SIGN}")
        req = signed.request
        rid = req.request_id
        found = self.key_of(req.requester)
        if found is None:
            raise ForgetRefused(f"request {rid}: requester {req.requester!r} has no public key in this learner's "
                                f"directory (owners {sorted(self.owners)}, controllers {sorted(self.controllers)})")
        principal, key = found
        if signed.audience != self.audience:
            raise ForgetRefused(f"request {rid} is addressed to {signed.audience!r}, not to this learner "
                                f"({self.audience!r})")
        if signed.key_id != key.key_id:
            raise ForgetRefused(f"request {rid}: signed with key {signed.key_id!r}, but {principal}'s key is "
                                f"{key.key_id!r}")
        try:
            sig = bytes.fromhex(signed.signature)
        except ValueError:
            sig = b""
        if not key.verifies(sig, signed.payload()):
            raise ForgetRefused(f"request {rid}: the signature does not verify under {principal}'s key "
                                "(forged, or altered after signing)")
        now = time.time() if now is None else now
        if signed.issued_at > now + CLOCK_SKEW_S:
            raise ForgetRefused(f"request {rid}: issued in the future ({signed.issued_at} > now {int(now)})")
        if self.max_age_s is not None and now - signed.issued_at > self.max_age_s:
            raise ForgetRefused(f"request {rid}: issued {int(now - signed.issued_at)} s ago, older than this "
                                f"learner accepts ({self.max_age_s} s)")
        return principal

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"audience": self.audience, "max_age_s": self.max_age_s,
                "owners": {str(k): v.hex() for k, v in sorted(self.owners.items())},
                "controllers": {k: v.hex() for k, v in sorted(self.controllers.items())}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "KeyDirectory":
        if not isinstance(d, Mapping) or "audience" not in d:
            raise ValueError("a key directory needs an 'audience'")
        out = cls(d["audience"], d.get("max_age_s"))
        for k, v in dict(d.get("owners", {})).items():
            try:
                owner = int(k)
            except ValueError:
                raise ValueError(f"key directory: owner id {k!r} is not an int") from None
            out.add_owner(owner, PublicKey.from_hex(v))
        for k, v in dict(d.get("controllers", {})).items():
            out.add_controller(k, PublicKey.from_hex(v))
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "KeyDirectory":
        return cls.from_dict(_read_json(path, "key directory"))

    def __repr__(self) -> str:
        return (f"KeyDirectory({self.audience!r}, owners={sorted(self.owners)}, "
                f"controllers={sorted(self.controllers)})")


def _public(key) -> PublicKey:
    if isinstance(key, SigningKey):
        raise ValueError("the directory takes public keys only (key.public_key), never a SigningKey")
    if not isinstance(key, PublicKey):
        raise ValueError(f"expected a PublicKey, got {type(key).__name__}")
    return key


def generate_keys(audience: str, owners: Iterable[int] = (), controllers: Iterable[str] = ()
                  ) -> tuple[KeyDirectory, dict]:
    """Fresh keys for a run: the directory the learner holds and each principal's signing key.

    Returns ``(directory, keys)`` with ``keys[owner_id]`` / ``keys[controller_name]``
    the :class:`SigningKey` that principal keeps (in a real deployment each
    principal makes its own and hands over only the public half).
    """
    directory, keys = KeyDirectory(audience), {}
    for o in owners:
        keys[o] = SigningKey.generate()
        directory.add_owner(o, keys[o].public_key)
    for c in controllers:
        keys[c] = SigningKey.generate()
        directory.add_controller(c, keys[c].public_key)
    return directory, keys
