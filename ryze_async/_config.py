"""The client's settings, checked once at construction, and the secret kept out of sight."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from yarl import URL

from ._checks import check_settings
from ._exceptions import InvalidRequestError
from ._quota.local import Lane
from ._version import __version__

__all__ = ["DEFAULT_BASE_URL", "ClientConfig", "Secret", "env_setting"]

DEFAULT_BASE_URL = "https://ryzeapi.cloud"
_PATHS = {"audio": "/api/call/audio/", "fake": "/api/call/fake/"}


#: Redacted text stands in for the token; a token prefix this long or longer at the end of a
#: cut excerpt is dropped too (a shorter one carries too little of the secret to matter).
REDACTED = "<redacted>"
_MIN_PREFIX = 4


class Secret:
    """The token, kept where a repr, a log or a traceback's locals cannot show it.

    Its repr and str are redacted, so an error tracker that captures frame locals (Sentry does
    by default) records ``<redacted>`` wherever a frame holds it. Only the transport reveals
    the value, in the frame that sends (see ``_transport``).
    """

    __slots__ = ("_forms", "_value")

    def __init__(self, value: object) -> None:
        self._value = value
        # The token as it may appear in text we build from an answer: raw, and escaped by
        # repr() (a backslash or quote doubles up) or by JSON.
        forms: set[str] = set()
        if isinstance(value, str) and value:
            forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], quote(value, safe="")}
        self._forms = tuple(sorted(forms, key=len, reverse=True))

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled")

    def reveal(self) -> str:
        """The token itself: for the request header only."""
        return self._value if isinstance(self._value, str) else ""

    @property
    def given(self) -> bool:
        return self._value is not None and self._value != ""

    def problem(self) -> str | None:
        """Why the token cannot be sent, or None; never echoes the value."""
        value = self._value
        if not value:
            return "no token: pass token= or set RYZE_TOKEN"
        if not isinstance(value, str) or any(ord(ch) < 33 or ord(ch) > 126 for ch in value):
            return "token must be printable ASCII without spaces or line breaks"
        return None

    def redact(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def excerpt(self, text: str, limit: int) -> str:
        """``repr(text)`` cut to ``limit`` characters, with no trace of the token.

        Redacted before repr() (so escaping cannot hide it), again after (its escaped forms),
        and only then cut; a token prefix left at the cut is dropped.
        """
        shown = self.redact(repr(self.redact(text)))
        if len(shown) <= limit:
            return shown
        cut = shown[:limit]
        for form in self._forms:
            for size in range(len(form) - 1, min(_MIN_PREFIX, len(form)) - 1, -1):
                if cut.endswith(form[:size]):
                    cut = cut[:-size]
                    break
        return cut + "..."


def env_setting(name: str) -> str | None:
    """A ``RYZE_*`` variable's value, stripped; None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _utf8(text: str) -> bool:
    # A lone surrogate (from a mis-decoded file name or JSON) cannot be sent: str.encode fails.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def instance_segment(instance: str) -> str:
    """The instance name as exactly one percent-encoded path segment, or InvalidRequestError."""
    if not isinstance(instance, str):
        raise InvalidRequestError(
            f"instance name must be a str, not {type(instance).__name__}", field="instance"
        )
    if not instance:
        raise InvalidRequestError("instance name is empty", field="instance")
    if not _utf8(instance):
        raise InvalidRequestError(
            f"instance name {instance!r} is not valid Unicode (a lone surrogate)",
            field="instance",
        )
    if instance != instance.strip():
        raise InvalidRequestError(
            f"instance name {instance!r} has leading or trailing whitespace", field="instance"
        )
    if instance in (".", "..") or any(ord(ch) < 32 or ord(ch) == 127 for ch in instance):
        raise InvalidRequestError(
            f"instance name {instance!r} cannot be sent as one path segment", field="instance"
        )
    # safe="" encodes "/", "?" and "#" too, so the name can never become two segments.
    return quote(instance, safe="")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Validated settings. The token is a ``Secret``: absent from reprs, messages and locals."""

    secret: Secret = field(repr=False)
    instance: str | None
    base_url: str
    rate_limit: int | None
    rate_period: float
    rate_margin: float | None
    max_retries: int
    timeout: float
    connect_timeout: float
    keepalive_timeout: float
    max_media_bytes: int
    #: The quota lane of this client's calls, and the slots of every window kept from bulk.
    priority: Lane
    interactive_reserve: int
    #: The longest a call waits for its quota slot by default (None: as long as it takes).
    max_wait: float | None
    #: The request headers; the token's value is the ``Secret``, revealed by the transport only.
    headers: Mapping[str, str | Secret] = field(repr=False)

    @property
    def token(self) -> str:
        return self.secret.reveal()

    @classmethod
    def build(
        cls, *, token: Secret, instance: str | None, base_url: str | None,
        rate_limit: int | None, rate_period: float, rate_margin: float | None,
        max_retries: int, timeout: float, connect_timeout: float | None,
        keepalive_timeout: float, allow_http: bool, max_media_bytes: int,
        priority: Lane = "interactive", interactive_reserve: int = 0,
        max_wait: float | None = None,
    ) -> ClientConfig:
        check_lanes(priority, interactive_reserve, rate_limit, max_wait)
        check_settings(rate_limit=rate_limit, max_retries=max_retries,
                       max_media_bytes=max_media_bytes, rate_period=rate_period,
                       rate_margin=rate_margin, timeout=timeout, connect_timeout=connect_timeout,
                       keepalive_timeout=keepalive_timeout)
        # The raw value is never bound to a local here: a traceback from this frame (any
        # refused setting below) must not carry it.
        secret = token if token.given else Secret(env_setting("RYZE_TOKEN"))
        problem = secret.problem()
        if problem is not None:
            raise InvalidRequestError(problem, field="token")
        instance = instance if instance is not None else env_setting("RYZE_INSTANCE")
        if instance is not None:
            _not_the_token(instance, secret)
            instance_segment(instance)
        base = _check_base_url(
            base_url or env_setting("RYZE_BASE_URL") or DEFAULT_BASE_URL, allow_http)
        connect = _connect_timeout(timeout, connect_timeout)
        headers: dict[str, str | Secret] = {
            "token": secret,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"ryze-async/{__version__}",
        }
        return cls(
            secret=secret, instance=instance, base_url=base, rate_limit=rate_limit,
            rate_period=float(rate_period), rate_margin=rate_margin, max_retries=max_retries,
            timeout=float(timeout), connect_timeout=float(connect),
            keepalive_timeout=float(keepalive_timeout), max_media_bytes=max_media_bytes,
            priority=priority, interactive_reserve=interactive_reserve, max_wait=max_wait,
            headers=headers,
        )

    def call_url(self, kind: str, instance: str | None) -> str:
        if instance is None:
            raise InvalidRequestError(
                "no instance: pass instance= (to the client or the call) or set RYZE_INSTANCE",
                field="instance",
            )
        _not_the_token(instance, self.secret)
        return f"{self.base_url}{_PATHS[kind]}{instance_segment(instance)}"

    def redact(self, text: str) -> str:
        """``text`` with the token replaced, for anything built from what a server sent."""
        return self.secret.redact(text)


def _not_the_token(instance: object, secret: Secret) -> None:
    """Refuse an instance name holding the token (settings swapped, a paste in the wrong
    field): the name is logged, journaled and a metrics label; the message never shows it."""
    # Never bound to a local (traceback locals); a short test token ("t") is no evidence.
    if isinstance(instance, str) and (secret.reveal() == instance or (
            len(secret.reveal()) >= 8 and secret.reveal() in instance)):
        raise InvalidRequestError("the instance name contains the token (were the settings "
                                  "swapped?): give the instance's name, and the token as the "
                                  "token", field="instance")


def check_lanes(
    priority: object, reserve: int, rate_limit: int | None, max_wait: float | None
) -> None:
    """The quota-lane settings: a known lane, a reserve that leaves bulk at least one slot."""
    if priority not in ("interactive", "bulk"):
        raise InvalidRequestError(
            f"priority must be 'interactive' or 'bulk', not {priority!r}", field="priority")
    check_settings(interactive_reserve=reserve, max_wait=max_wait)
    if rate_limit is not None and isinstance(rate_limit, int) and reserve >= rate_limit > 0:
        raise InvalidRequestError(
            f"interactive_reserve must be below rate_limit ({rate_limit}), not {reserve}: "
            "bulk calls would never be sent", field="interactive_reserve")


def _connect_timeout(timeout: float, connect_timeout: float | None) -> float:
    connect = min(10.0, timeout / 3) if connect_timeout is None else connect_timeout
    if not 0 < connect < timeout:
        # A connect timeout at or above the total would surface as a total timeout, which
        # is an unknown outcome, and lose the retry that a never-sent request deserves.
        field = "timeout" if connect_timeout is None else "connect_timeout"
        raise InvalidRequestError("connect_timeout must be > 0 and below timeout", field=field)
    return float(connect)


def _check_base_url(url: str, allow_http: bool) -> str:
    if not isinstance(url, str):
        raise InvalidRequestError(f"base_url must be a str, not {type(url).__name__}",
                                  field="base_url")
    url = url.strip()
    if not _utf8(url) or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise InvalidRequestError(
            f"base_url {url!r} contains whitespace, control characters or lone surrogates",
            field="base_url",
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not 0-65535
    except ValueError as exc:
        raise InvalidRequestError(f"base_url {url!r} is not a valid URL ({exc})",
                                  field="base_url") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequestError(f"base_url {url!r} must be an http(s) URL with a host",
                                  field="base_url")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequestError("base_url must not carry credentials", field="base_url")
    if parts.query or parts.fragment:
        raise InvalidRequestError("base_url must not have a query or fragment", field="base_url")
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise InvalidRequestError(
            f"base_url {url!r} is plain http to a non-loopback host: the token would travel in "
            "clear text (pass allow_http=True if you really mean it)",
            field="base_url",
        )
    return _encoded(f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}")


def _encoded(base: str) -> str:
    # The transport hands call URLs to aiohttp as already encoded: IDNA and percent-encoding
    # happen here, once, and a host yarl cannot encode (IDNA errors, NFKC-invalid characters)
    # is refused now instead of raising ValueError from inside a call.
    try:
        return str(URL(base))
    except (ValueError, UnicodeError) as exc:
        raise InvalidRequestError(f"base_url {base!r} is not a valid URL ({exc})",
                                  field="base_url") from None
