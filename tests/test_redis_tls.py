"""The shared quota over TLS with an ACL user (issue 19): ``rediss://user:pass@host/0`` with
``ssl_ca_certs``, against a real redis-server that accepts TLS only (``redis_tls.py``) and the
ACL rule docs/scale-out-infra.md gives users.

The fake server's record is the oracle: never over the limit in any window, nobody called
twice. A wrong CA, a host name the certificate is not for, a wrong password and a missing CA
file fail closed before anything is sent (exit 2), and the ACL password shows nowhere, whole
or in part.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from ryze_async import InvalidRequestError, RyzeClient
from ryze_async.testing import FakeRyzeServer
from ryze_async.testing._quota_sim import max_in_window

from .cli_helpers import run_cli
from .redis_tls import ACL_PASSWORD, TlsRedis, acl_rule, tls_redis
from .test_redis_wiring import _cli_processes, _numbers_file

ROOT = Path(__file__).resolve().parent.parent
LIMIT, PERIOD = 4, 0.5


@pytest.fixture(scope="module")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    with tls_redis(tmp_path_factory.mktemp("redis-tls")) as server:
        yield server


def _no_part_of_the_password(text: str) -> None:
    for start in range(len(ACL_PASSWORD) - 5):
        assert ACL_PASSWORD[start:start + 6] not in text


def _campaign(numbers: Path, journal: Path, url: str, server: FakeRyzeServer) -> list[str]:
    return ["campaign", str(numbers), "--fake", "--journal", str(journal), "--token",
            "test-token", "--instance", "my-instance", "--max-retries", "0",
            "--quota-url", url, "--base-url", server.url, "--rate-limit", str(LIMIT),
            "--rate-period", str(PERIOD)]


@pytest.mark.infra
async def test_two_processes_share_the_quota_over_tls_as_the_acl_user(
    redis_tls: TlsRedis, tmp_path: Path
) -> None:
    each = 10
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        results = await _cli_processes([
            _campaign(_numbers_file(tmp_path / f"n{i}.csv", i * each, each),
                      tmp_path / f"j{i}.db", redis_tls.url(), server)
            for i in range(2)])
    for code, out in results:
        assert code == 0, out
        assert "shared through Redis" in out
        _no_part_of_the_password(out)
    arrivals = [r.received_at for r in server.requests if r.route == "fake"]
    assert len(arrivals) == 2 * each
    assert [r.status for r in server.requests].count(429) == 0
    assert max_in_window(arrivals, PERIOD) <= LIMIT
    numbers = Counter(r.json["number"] for r in server.placed_calls)
    assert len(numbers) == 2 * each
    assert max(numbers.values()) == 1  # nobody twice


@pytest.mark.infra
@pytest.mark.parametrize(("case", "expected"), [
    ("other CA", "certificate"),
    ("by address", "127.0.0.1"),
    ("wrong password", "password"),
    ("missing CA file", "ssl_ca_certs"),
    ("another database", "'select'"),
])
async def test_a_wrong_setting_fails_closed_before_anything_is_sent(
    redis_tls: TlsRedis, tmp_path: Path, case: str, expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = {
        "other CA": redis_tls.url(ca=redis_tls.pki.other_ca),
        "by address": redis_tls.url(host="127.0.0.1"),
        "wrong password": redis_tls.url(password=ACL_PASSWORD[::-1]),
        "missing CA file": redis_tls.url(ca=tmp_path / "absent.pem"),
        "another database": redis_tls.url().replace("/0?", "/2?"),  # the rule has no SELECT
    }[case]
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD) as server:
        code, out, err = await run_cli(
            _campaign(_numbers_file(tmp_path / "n.csv", 0, 3), tmp_path / "j.db", url, server),
            {})
        with pytest.raises(InvalidRequestError) as caught:
            async with RyzeClient("test-token", "my-instance", base_url=server.url,
                                  rate_limit=LIMIT, rate_period=PERIOD, quota_url=url):
                pass
    assert code == 2, out + err
    assert expected in err
    assert "rediss://ryze@" in err
    assert not server.requests
    texts = [out, err, caplog.text]
    exc: BaseException | None = caught.value
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    for text in texts:
        _no_part_of_the_password(text)
        if case == "wrong password":
            assert ACL_PASSWORD[::-1][:6] not in text


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://u:pw-Zq81xkAB@127.0.0.1:6379/0?ssl_ca_certs=/etc/hosts", "needs a rediss://"),
    ("rediss://u:pw-Zq81xkAB@127.0.0.1:6379/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be"),
    ("rediss://u:pw-Zq81xkAB@127.0.0.1:6379/0?ssl_ca_certs=/etc/hostname", "cannot be used"),
])
def test_tls_settings_redis_py_would_trip_on_later_are_refused_at_construction(
    url: str, expected: str
) -> None:
    with pytest.raises(InvalidRequestError, match=expected) as refused:
        RyzeClient("test-token", "i", quota_url=url)
    assert "Zq81" not in str(refused.value)


def test_the_acl_rule_lists_every_command_the_quota_runs() -> None:
    """The docs' rule against the code: a command the quota starts using must be added there."""
    code = "".join(p.read_text(encoding="utf-8")
                   for p in (ROOT / "ryze_async" / "_quota" / "redis").glob("*.py"))
    used = {c.lower() for c in re.findall(r"redis\.p?call\('([A-Za-z]+)'", code)}
    used |= set(re.findall(r"self\._redis\.([a-z]+)\(", code))
    used = {"del" if c == "delete" else c for c in used} - {"aclose", "register_script"}
    allowed = {w[1:] for w in acl_rule() if w.startswith("+")}
    assert used - allowed == set()
    assert {"evalsha", "eval", "script|load"} <= allowed
    assert {w for w in acl_rule() if w.startswith("~")} == {"~ryze:*"}
    assert "-@all" in acl_rule()
