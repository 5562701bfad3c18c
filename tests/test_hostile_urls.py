"""Hostile quota and database URLs (issue 15, attacker pass; issue 17): a URL the client cannot
use is an ``InvalidRequestError`` when the client is built (CLI exit 2), never a ``ValueError``
at the first call, and no message shows the password, whole or in part. One function shows a
URL (``ryze_async._urls.shown_url``), for Redis and PostgreSQL alike: seen here through the
journal's ``describe`` and the Redis quota's messages."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from ryze_async import InvalidRequestError, RedisQuota, RyzeClient
from ryze_async._campaign.journal import describe

from .cli_helpers import run_cli

PASSWORD = "Pw-7hQx93kZ"
# Each one a URL the client cannot use: unparsable, out of range, or not naming a database.
MALFORMED = (
    "redis://:{pw}@127.0.0.1:notaport/0",
    "redis://:{pw}@[::1",
    "redis://:{pw}@127.0.0.1:99999/0",
    "redis://:{pw}@127.0.0.1:-1/0",
    "redis://:{pw}@127.0.0.1:6379/zero",
    "redis://:{pw}@127.0.0.1:6379/0?db=x",
    "rediss://user:{pw}@127.0.0.1:6379/1/2",
    "redis://:{pw}@127.0.0.1:6379/0?socket_timeout=never",
    "unix://:{pw}@/tmp/redis.sock?db=nine",
    "redis://:{pw}@:6379/0",
)
UNKNOWN_SCHEME = ("http://:{pw}@127.0.0.1:6379/0", "redis//:{pw}@host", "{pw}")


def _fragments(secret: str, size: int = 4) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


def assert_no_part_of(secret: str, text: str, *, allowed: str = "") -> None:
    """No piece of 4 characters of `secret` in `text`, unless the URL shows it elsewhere."""
    leaked = {f for f in _fragments(secret) if f in text and f not in allowed}
    assert not leaked, (leaked, text)


@pytest.mark.parametrize("template", MALFORMED + UNKNOWN_SCHEME)
def test_the_client_refuses_a_malformed_quota_url_when_built(template: str) -> None:
    url = template.format(pw=PASSWORD)
    with pytest.raises(InvalidRequestError, match="quota_url") as refused:
        RyzeClient("test-token", "my-instance", quota_url=url)
    assert refused.value.field == "quota_url"
    for text in (str(refused.value), repr(refused.value)):
        assert_no_part_of(PASSWORD, text)


@pytest.mark.parametrize("template", MALFORMED)
def test_redis_quota_from_url_refuses_it_too(template: str) -> None:
    url = template.format(pw=PASSWORD)
    with pytest.raises(InvalidRequestError) as refused:
        RedisQuota.from_url(url, token_digest="d", limit=10, period=60)
    assert_no_part_of(PASSWORD, str(refused.value))


@pytest.mark.parametrize("template", MALFORMED[:4])
async def test_the_cli_exits_2_on_a_malformed_quota_url(template: str) -> None:
    url = template.format(pw=PASSWORD)
    for env, args in (({}, ["--quota-url", url]), ({"RYZE_QUOTA_URL": url}, [])):
        code, out, err = await run_cli(
            ["fake-call", "5511900000000", "--token", "test-token", "--instance", "x",
             "--base-url", "http://127.0.0.1:9", *args], env)
        assert code == 2, err
        assert "quota" in err.lower()
        assert "internal error" not in err
        assert_no_part_of(PASSWORD, out + err)


@pytest.mark.parametrize("url", [
    "postgresql://ryze:{pw}@127.0.0.1:notaport/ryze",
    "postgresql://ryze:{pw}@[::1/ryze",
    "postgres://ryze:{pw}@127.0.0.1:99999/ryze?sslmode=require&password={pw}",
    "postgresql://ryze:{pw}/with/slashes@db/ryze",
])
def test_a_journal_url_is_shown_without_its_password_even_malformed(url: str) -> None:
    url = url.format(pw=PASSWORD)
    shown = describe(url)
    assert_no_part_of(PASSWORD, shown)
    assert shown.split("://")[0] == url.split("://")[0]


def test_the_same_function_shows_journal_and_quota_urls() -> None:
    assert describe(f"postgresql://ryze:{PASSWORD}@db.example:5433/jobs?sslmode=require") == \
        "postgresql://ryze@db.example:5433/jobs"
    assert describe(f"postgres://ryze:{PASSWORD}@db:notaport/jobs") == "postgres://ryze@db:?/jobs"
    quota = RedisQuota.from_url(f"redis://user:{PASSWORD}@[::1]:6380/2?password={PASSWORD}",
                                token_digest="d", limit=10, period=60)
    assert "backend='Redis at user@[::1]:6380/2'" in repr(quota)
    assert_no_part_of(PASSWORD, repr(quota))


async def test_a_dry_run_on_a_malformed_database_url_exits_2_without_the_password(
    tmp_path: Path,
) -> None:
    pytest.importorskip("asyncpg")
    numbers = tmp_path / "n.csv"
    numbers.write_text("number\n5511900000000\n", encoding="utf-8")
    url = f"postgresql://ryze:{PASSWORD}@127.0.0.1:notaport/ryze"
    env = {"RYZE_TOKEN": "t", "RYZE_INSTANCE": "i", "RYZE_BASE_URL": "http://127.0.0.1:9"}
    code, out, err = await run_cli(["campaign", str(numbers), "--journal", url, "--campaign",
                                    "c", "--fake", "--dry-run"], env)
    assert code == 2, err
    assert_no_part_of(PASSWORD, out + err)


PASSWORDS = st.text(alphabet=string.ascii_letters + string.digits + "-._~!$&'()*+,;=%",
                    min_size=6, max_size=24)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(password=PASSWORDS, template=st.sampled_from(MALFORMED + UNKNOWN_SCHEME))
def test_no_malformed_url_shows_any_part_of_its_password(password: str, template: str) -> None:
    url = template.format(pw=password)
    # What may be shown: the URL without its password, and the words of the message itself.
    without = template.format(pw="")
    allowed = without + _refusal(without)
    assert_no_part_of(password, _refusal(url), allowed=allowed)


def _refusal(url: str) -> str:
    with pytest.raises(InvalidRequestError) as refused:
        RyzeClient("test-token", "my-instance", quota_url=url)
    return str(refused.value) + repr(refused.value)
