"""#17, one redaction: ``ryze_async._urls`` is the only place a URL loses its password
(``shown_url`` for a URL shown, ``scrub`` for a text that may quote it). Malformed URLs of every
scheme the project takes: no part of the password (4 characters or more, as written or
percent-decoded) is ever shown."""

from __future__ import annotations

import pathlib
import re
from urllib.parse import unquote

import pytest

# The campaign's journal re-exports them (tests reach the client core only by public seams).
from ryze_async._campaign.journal import scrub, shown_url

PASSWORDS = ["Pw-7hQx93kZ", "s3cr@tPassW", "s3c:r3tPassW", "p%40ssW0rd%3Aq", "Pw/7hQx9/3kZ",
             "9182/7364", "5432@db:8812"]
TEMPLATES = [
    "postgresql://u:{pw}@h:notaport/db",
    "postgresql://u:{pw}@/db",
    "postgresql://u:{pw}@:5432/db",
    "postgresql://u:{pw}@[::1]:5432/db",
    "postgresql://u:{pw}@[::1/db",
    "postgres://u:{pw}@h:99999/db?sslmode=require",
    "postgresql://u@h/db?password={pw}",
    "postgresql://u@h/db?sslmode=verify-full&sslpassword={pw}",
    "rediss://user@h:6380/0?ssl_password={pw}",
    "redis://:{pw}@127.0.0.1:6379/0",
    "redis://:{pw}@127.0.0.1:notaport/0",
    "rediss://user:{pw}@[2001:db8::1]:6380/1",
    "unix://:{pw}@/tmp/redis.sock?db=0",
    "unix://user:{pw}@/tmp/redis.sock",
    # A Redis Cluster's and a Sentinel set's forms (issue 19): several hosts.
    "redis+cluster://u:{pw}@10.0.0.1:7000,10.0.0.2:7001/0",
    "rediss+cluster://u:{pw}@[::1]:7000,h2:notaport/0?ssl_ca_certs=/ca.pem",
    "redis+cluster://:{pw}@h1:7000,/0",
    "redis+sentinel://:{pw}@h1:26379,h2:26380/mymaster/0",
    "rediss+sentinel://u:{pw}@h1:26379/mymaster?sentinel_password={pw}",
    "redis+sentinel://h1:26379,h2:26379/mymaster/0?sentinel_password={pw}",
]


def _fragments(secret: str) -> set[str]:
    return {secret[i:i + 4] for i in range(len(secret) - 3)}


def _leaked(password: str, text: str, allowed: str) -> set[str]:
    parts = _fragments(password) | _fragments(unquote(password))
    return {p for p in parts if p in text and p not in allowed}


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_shown_url_shows_no_part_of_the_password(template: str, password: str) -> None:
    url = template.format(pw=password)
    shown = shown_url(url)
    assert not _leaked(password, shown, template.format(pw="")), (url, shown)
    assert shown.split("://")[0] == url.split("://")[0]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_scrub_removes_the_url_and_its_password_from_a_driver_message(
    template: str, password: str,
) -> None:
    url = template.format(pw=password)
    message = (f"cannot connect to {url}: password authentication failed "
               f"(password {unquote(password)!r}, as written {password})")
    scrubbed = scrub(message, url)
    assert not _leaked(password, scrubbed, template.format(pw="") + message.replace(
        url, "").replace(unquote(password), "").replace(password, "")), (url, scrubbed)


def test_well_formed_urls_keep_what_identifies_them() -> None:
    assert shown_url("postgresql://ryze:pw@db.example:5433/jobs?sslmode=require") == \
        "postgresql://ryze@db.example:5433/jobs"
    assert shown_url("postgresql://u:pw@h:notaport/db") == "postgresql://u@h:?/db"
    assert shown_url("rediss://user:pw@[2001:db8::1]:6380/1") == \
        "rediss://user@[2001:db8::1]:6380/1"
    assert shown_url("unix://:pw@/tmp/redis.sock?db=0") == "unix:///tmp/redis.sock"
    assert shown_url("not a url") == "<not a URL>"
    assert shown_url("rediss+cluster://ryze:pw@10.0.0.1:7000,10.0.0.2:x/0?ssl_ca_certs=/c") == \
        "rediss+cluster://ryze@10.0.0.1:7000,10.0.0.2:?/0"
    assert shown_url("redis+sentinel://:pw@h1:26379,h2:26380/mymaster/0?sentinel_password=s") \
        == "redis+sentinel://h1:26379,h2:26380/mymaster/0"


def test_no_other_module_takes_a_password_out_of_a_url() -> None:
    """The one home: nothing else in the package parses a URL's password to hide it."""
    root = pathlib.Path(__file__).parents[1] / "ryze_async"
    hiding = re.compile(r"\.password\b|rpartition\(\"@\"\)|partition\(\"@\"\)")
    found = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if p.name != "_urls.py" and hiding.search(p.read_text(encoding="utf-8"))]
    # base_url is refused when it carries credentials; a number's JID suffix is no URL.
    assert sorted(found) == ["_config.py", "_numbers.py"]
