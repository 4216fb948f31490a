"""``$BREAKGLASS_HOME`` (default ``~/.breakglass``): run records, journals, artifacts, the local Prefect server."""

from __future__ import annotations

import os
import re
from pathlib import Path

from breakglass.flows.errors import BreakglassError

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def home() -> Path:
    path = Path(os.environ.get("BREAKGLASS_HOME") or "~/.breakglass").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:  # made by someone else's umask, or by hand
        path.chmod(0o700)
    return path


def check_id(value: str, what: str = "incident id") -> str:
    if not ID_RE.fullmatch(value) or ".." in value:
        raise BreakglassError(
            f"{what} {value!r} is not allowed: use 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return value


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, fsynced, readable only by the owner."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine with this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
