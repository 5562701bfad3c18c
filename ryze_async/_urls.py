"""A URL as it may be shown: the one place a Redis or database URL loses its password.

Every message, repr and log that names a quota or journal URL goes through `shown_url`; a text
that may quote the URL (a driver's error) goes through `scrub`. Both work on malformed URLs
(a bad port, an unclosed ``[``): what cannot be parsed safely is left out, never shown raw.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

__all__ = ["scrub", "shown_url"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_NETLOC_END = re.compile(r"[/?#]")
_QUERY = re.compile(r"[?#]")
_PORT = re.compile(r"(?P<host>\[[^\]]*\]|[^:]*)(?::(?P<port>.*))?")


def _split(url: str) -> tuple[str, str, str, str] | None:
    """(scheme, userinfo, hosts, path) as written, None when it is no URL at all; `hosts` is
    ``host:port``, or several of them between commas (a Redis Cluster's or Sentinel set's)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return None
    netloc, path = _NETLOC_END.split(rest, maxsplit=1)[0], ""
    if len(netloc) < len(rest) and rest[len(netloc)] == "/":
        path = _QUERY.split(rest[len(netloc):], maxsplit=1)[0]
    userinfo, _, hosts = netloc.rpartition("@")
    return scheme.lower(), userinfo, hosts, path


def _shown_host(hostport: str) -> str:
    """``host:port`` as shown: a port that is not a number is ``?``."""
    where = _PORT.fullmatch(hostport)
    host, port = (where["host"], where["port"] or "") if where else ("", "")
    shown_port = "" if not port else f":{port}" if port.isdigit() else ":?"
    return f"{host}{shown_port}"


def shown_url(url: str) -> str:
    """`url` without its password, query or fragment: ``scheme://user@host:port/path``.

    A port that is not a number is shown as ``?``; when an ``@`` follows the authority (a
    password with a ``/``, ``?`` or ``#`` in it moves the parts) only the scheme is shown; a text
    that is no URL is ``<not a URL>``.
    """
    split = _split(url)
    if split is None:
        return "<not a URL>"
    scheme, userinfo, hosts, path = split
    if _moved(url):
        return f"{scheme}://..."
    user = userinfo.partition(":")[0]
    shown = ",".join(_shown_host(hostport) for hostport in hosts.split(","))
    return f"{scheme}://{user + '@' if user else ''}{shown}{path}"


def _moved(url: str) -> bool:
    """Whether an ``@`` follows the authority: a password holding ``/``, ``?`` or ``#`` moved
    the parts, so what parses as user, host, port or path may be a piece of it."""
    rest = url.partition("://")[2]
    netloc = _NETLOC_END.split(rest, maxsplit=1)[0]
    return "@" in rest[len(netloc):]


def _passwords(url: str) -> set[str]:
    """Every password `url` may carry, as written and decoded: its userinfo's, its query's."""
    split = _split(url)
    if split is None:
        return {url} if url else set()  # not a URL: all of it may be a secret
    found = {split[1].partition(":")[2]}
    # A password holding ``/``, ``?`` or ``#`` ends the authority early: the text before any
    # ``@`` may be the userinfo.
    rest = url.partition("://")[2]
    found |= {rest[:at].partition(":")[2] for at, ch in enumerate(rest) if ch == "@"}
    query = url.partition("?")[2].partition("#")[0]
    # ``password``; a Sentinel set's own ``sentinel_password``; a TLS client key's
    # ``sslpassword`` (libpq, asyncpg) or ``ssl_password`` (redis-py).
    found |= {v for k, v in parse_qsl(query, keep_blank_values=True)
              if k.lower().endswith("password")}
    found |= {v for k, _, v in (pair.partition("=") for pair in query.split("&"))
              if unquote(k).lower().endswith("password")}  # as written: percent-encoded
    return {p for text in found for p in (text, unquote(text)) if p}


def scrub(message: str, url: str) -> str:
    """``message`` with `url` shown by `shown_url` and any of its passwords as ``***``."""
    message = message.replace(url, shown_url(url))
    for password in sorted(_passwords(url), key=len, reverse=True):
        message = message.replace(password, "***")
    return message
