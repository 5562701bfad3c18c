"""``campaign --senders FILE``: a CSV of ``instance,token`` rows, the campaign's pool.

The file holds tokens, so it is refused unless it is owner-only (like ``~/.ssh`` keys), and a
token is wrapped in ``Secret`` the moment it is read: no message, log line or traceback local
shows one. Only instance names are ever printed.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

from ryze_async._config import Secret

from ._exits import UsageError

__all__ = ["read_senders"]

_MAX_BYTES = 1 << 20


def read_senders(path: Path) -> dict[str, Secret]:
    """``{instance: Secret(token)}`` in file order; a ``UsageError`` (exit 2) if unusable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise UsageError(f"--senders {path}: cannot open it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"--senders {path}: not a regular file")
        if mode & 0o077:
            raise UsageError(
                f"--senders {path} holds tokens but other users may read it (mode "
                f"{stat.S_IMODE(mode):04o}): make it owner-only first (chmod 600 {path})")
        raw = f.read(_MAX_BYTES + 1)
    if len(raw) > _MAX_BYTES:
        raise UsageError(f"--senders {path}: larger than 1 MiB, not a list of senders")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--senders {path}: not UTF-8 text") from None
    return _parse(path, text)


def _parse(path: Path, text: str) -> dict[str, Secret]:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if "instance" not in header or "token" not in header:
        raise UsageError(f"--senders {path}: the first line must name the columns "
                         "'instance' and 'token'")
    at_name, at_token = header.index("instance"), header.index("token")
    senders: dict[str, Secret] = {}
    for fields in reader:
        if not any(cell.strip() for cell in fields):
            continue
        line = reader.line_num
        name, secret = _row(fields, at_name, at_token)
        if not name or secret is None:
            # Which line, never what it holds: the cells may be a token.
            raise UsageError(f"--senders {path}, line {line}: needs an instance and a token")
        if name in senders:
            raise UsageError(f"--senders {path}, line {line}: instance {name!r} twice")
        senders[name] = secret
    if not senders:
        raise UsageError(f"--senders {path}: no senders in it")
    if any(_holds(name, secret) for name in senders for secret in senders.values()):
        # A row's cells swapped: the name would be printed, journaled and a metrics label.
        raise UsageError(f"--senders {path}: an instance name contains a token (cells "
                         "swapped?): the instance column holds names, the token column tokens")
    return senders


def _holds(name: str, secret: Secret) -> bool:
    # The token is never bound to a local (traceback locals); a short one is no evidence.
    return secret.reveal() == name or (len(secret.reveal()) >= 8 and secret.reveal() in name)


def _row(fields: list[str], at_name: int, at_token: int) -> tuple[str, Secret | None]:
    name = fields[at_name].strip() if at_name < len(fields) else ""
    token = fields[at_token].strip() if at_token < len(fields) else ""
    return name, Secret(token) if token else None
