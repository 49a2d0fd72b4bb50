"""Downloads that fail fast and clearly when there is no network."""
from __future__ import annotations

import socket
import urllib.request
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def socket_timeout(seconds: float):
    """Bound every blocking socket call inside the block (third-party fetchers set none)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def download(url: str, dest: Path, timeout_s: float = 30.0, what: str = "file") -> Path:
    """Fetch ``url`` to ``dest`` atomically; raise ``RuntimeError`` naming the URL and the fix on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
    except (OSError, ValueError) as e:
        if tmp.exists():
            tmp.unlink()
        raise RuntimeError(f"could not download {what} from {url} ({e}); place the data locally and pass its "
                           f"path instead") from e
    tmp.replace(dest)
    return dest
