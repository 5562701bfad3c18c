"""The TLS setting, ``RyzeClient(ssl=...)``, checked once at construction as aiohttp and httpx
users know it: an ``ssl.SSLContext``, a CA bundle (a PEM file, or a directory in OpenSSL's
hashed ``capath`` layout) whose certificates alone are trusted, or ``False`` only together with
``insecure_skip_verify=True``. ``None`` (or ``True``) keeps aiohttp's default, the system's
roots, unless ``RYZE_CA_FILE`` names a CA bundle.

A CA path is read here, not at the first call: a missing, unreadable or certificate-less file
is a setting error (``InvalidRequestError``), never a call that fails or, worse, is retried.
"""

from __future__ import annotations

import os
import re
import ssl
from typing import Literal, TypeAlias

from ._config import env_setting
from ._exceptions import InvalidRequestError

__all__ = ["SslArg", "Tls", "tls_setting"]

#: What ``ssl=`` accepts.
SslArg: TypeAlias = "ssl.SSLContext | str | os.PathLike[str] | bool | None"
#: What the transport is given: a context, False (no verification), or None (aiohttp's default).
Tls: TypeAlias = "ssl.SSLContext | Literal[False] | None"

#: Where the message names the keyword; the CLI shows ``--ca-file`` there (``cli_words``).
_WHERE = "ssl= (or RYZE_CA_FILE)"
#: A certificate in OpenSSL's ``capath`` layout: ``<subject hash>.<n>`` (``openssl rehash``).
_HASHED = re.compile(r"[0-9a-f]{8}\.\d+")


def tls_setting(value: object, *, insecure_skip_verify: object, own_transport: bool) -> Tls:
    """The checked setting for the transport; ``own_transport``: the client builds its aiohttp
    transport (a ``transport=`` of the caller's has TLS settings of its own, and
    ``RYZE_CA_FILE`` is not read for it)."""
    _check_opt_in(value, insecure_skip_verify)
    if not own_transport:
        if value is not None and value is not True:
            raise InvalidRequestError(
                "ssl= configures the built-in transport; a transport= of your own has its own "
                "TLS settings", field="ssl")
        return None
    return _checked(env_setting("RYZE_CA_FILE") if value is None else value)


def _check_opt_in(value: object, insecure_skip_verify: object) -> None:
    """``ssl=False`` and ``insecure_skip_verify=True`` go together, or not at all."""
    if not isinstance(insecure_skip_verify, bool):
        raise InvalidRequestError("insecure_skip_verify must be True or False", field="ssl")
    if insecure_skip_verify and value is not False:
        raise InvalidRequestError(
            "insecure_skip_verify=True goes with ssl=False only: it says that turning "
            "certificate verification off is meant", field="ssl")
    if value is False and not insecure_skip_verify:
        raise InvalidRequestError(
            "ssl=False turns certificate verification off: anyone on the path could read "
            "the token; pass insecure_skip_verify=True as well if you really mean it, or "
            "give the server's CA (ssl=PATH or an ssl.SSLContext)", field="ssl")


def _checked(value: object) -> Tls:
    if value is False:
        return False
    if value is None or value is True:
        return None
    if isinstance(value, ssl.SSLContext):
        return value
    path = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(path, str) or not path:
        raise InvalidRequestError(
            "ssl must be an ssl.SSLContext, the path of a CA file or directory, or False (with "
            f"insecure_skip_verify=True), not {_kind(value)}", field="ssl")
    return _context(path)


def _kind(value: object) -> str:
    return "an empty path" if value == "" else type(value).__name__


def _context(path: str) -> ssl.SSLContext:
    """A verifying context trusting exactly the CA certificates at ``path``."""
    try:
        if os.path.isdir(path):
            if not any(_HASHED.fullmatch(name) for name in os.listdir(path)):
                raise InvalidRequestError(
                    f"the CA directory {path} holds no certificate in OpenSSL's hashed layout "
                    f"(<hash>.0; run 'openssl rehash {path}'), given as {_WHERE}", field="ssl")
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        problem = "does not exist"
    except ssl.SSLError as exc:
        problem = f"holds no valid PEM certificate ({exc.reason or exc.strerror})"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
    raise InvalidRequestError(f"{path} {problem}: {_WHERE} names the CA certificates to trust",
                              field="ssl")
