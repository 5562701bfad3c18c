"""#17: every public name shows and pickles under its public path, not where it is defined.

A repr, a traceback or a pickle that names ``ryze_async._campaign.outcomes.CampaignOutcome``
breaks (or lies) the day that private module moves. Each exported class and function reports
``ryze_async`` (or its public submodule) as its ``__module__``, and pickle finds it there: through
the lazy ``__getattr__`` of ``ryze_async`` in a fresh interpreter.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

import ryze_async
from ryze_async import (
    APIError,
    CallResult,
    CampaignOutcome,
    CampaignSummary,
    ClientClosedError,
    RyzeClient,
    RyzeError,
    run_campaign,
)
from ryze_async.testing import MockRequest, MockResponse, MockTransport, run_virtual

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-SECRET-public-names-51c2"
NUMBER = "5511999999999"
PLACED = MockResponse(200, {"success": True, "message": "Call placed", "callId": "C1",
                            "number": NUMBER}, headers={"X-RateLimit-Remaining": "7"})


def _envelope(status: int, message: str) -> MockResponse:
    return MockResponse(status, {"success": False, "error": {"message": message}},
                        headers={"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"})


def _exported() -> list[tuple[str, str]]:
    pairs = [("ryze_async", name) for name in ryze_async.__all__ if name != "__version__"]
    for public in ("ryze_async.testing", "ryze_async.metrics", "ryze_async.otel"):
        try:
            module = importlib.import_module(public)
        except ImportError:  # an extra not installed: its names are checked where it is
            continue
        pairs += [(public, name) for name in module.__all__]
    return pairs


@pytest.mark.parametrize(("public", "name"), _exported(), ids=lambda v: v)
def test_every_exported_name_reports_its_public_module(public: str, name: str) -> None:
    module = importlib.import_module(public)
    obj = getattr(module, name)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        # A type alias (``BeforeSend``, ``StopReason``): a typing construct, nothing of ours
        # to show or to pickle by name. Anything else exported must be a class or a function.
        assert typing.get_origin(obj) is not None, (name, obj)
        return
    assert obj.__module__ == public, (name, obj.__module__)
    assert obj.__qualname__ == name
    assert getattr(module, obj.__qualname__) is obj  # what pickle does to find it


def test_reprs_show_the_public_path() -> None:
    assert repr(RyzeClient) == "<class 'ryze_async.RyzeClient'>"
    assert repr(CampaignOutcome) == "<class 'ryze_async.CampaignOutcome'>"
    assert repr(CampaignSummary) == "<class 'ryze_async.CampaignSummary'>"
    assert repr(CallResult) == "<class 'ryze_async.CallResult'>"
    assert repr(ryze_async.testing.MockTransport) == "<class 'ryze_async.testing.MockTransport'>"


def test_models_and_dataclasses_still_resolve_their_types() -> None:
    # pydantic and typing look string annotations up in ``cls.__module__``: now ``ryze_async``.
    assert CallResult.model_rebuild(force=True)
    result = CallResult.model_validate({"success": True, "rate_limit": {"remaining": 3}})
    assert result.rate_limit == ryze_async.RateLimitInfo(remaining=3)
    outcome = TypeAdapter(CampaignOutcome).validate_python(
        {"number": NUMBER, "state": "placed", "line": 2})
    assert outcome == CampaignOutcome(NUMBER, "placed", 2)
    with pytest.raises(ValidationError):
        TypeAdapter(CampaignOutcome).validate_python({"number": NUMBER, "state": "x", "line": 2})
    for cls in (CampaignSummary, ryze_async.CampaignPlan, ryze_async.RequestEnded,
                ryze_async.RawResponse, ryze_async.Media, ryze_async.CampaignOutcomeRecorded):
        assert typing.get_type_hints(cls), cls
    assert typing.get_type_hints(CampaignSummary)["stop_reason"] == ryze_async.StopReason | None


def _client(*answers: MockResponse | Exception, rate_limit: int | None = None) -> RyzeClient:
    pending = list(answers)

    def handler(_request: MockRequest) -> MockResponse:
        item = pending.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return RyzeClient(token=TOKEN, instance="inst", transport=MockTransport(handler),
                      rate_limit=rate_limit, max_retries=0)


async def _raised(client: RyzeClient, number: str = NUMBER) -> Exception:
    try:
        await client.fake_call(number)
    except (RyzeError, ClientClosedError) as exc:
        return exc
    finally:
        await client.aclose()
    raise AssertionError("no error")


async def _client_errors() -> list[Exception]:
    errors = [await _raised(_client(_envelope(status, message)))
              for status, message in ((400, "bad"), (401, "bad token"), (403, "not yours"),
                                      (404, "no such instance"), (503, "instance not connected"),
                                      (500, "boom"), (429, "Rate limit exceeded"))]
    errors.append(await _raised(_client(MockResponse(502, body=b"<html>proxy</html>"))))
    errors.append(await _raised(_client(MockTransport.not_sent())))
    errors.append(await _raised(_client(), number="not a number"))
    closed = _client()
    await closed.aclose()
    errors.append(await _raised(closed))
    async with _client(PLACED, rate_limit=1) as spent:  # the minute's one slot taken
        await spent.fake_call(NUMBER)
        errors.append(await _raised(spent.with_options(max_wait=0)))
    return errors


async def _campaign_objects(tmp_path: Path) -> tuple[list[CampaignOutcome], CampaignSummary]:
    outcomes: list[CampaignOutcome] = []

    async def sink(outcome: CampaignOutcome) -> None:
        outcomes.append(outcome)

    client = _client(PLACED, _envelope(400, "bad"))
    campaign = ryze_async.Campaign(client, [NUMBER, "5511988887777"], journal=tmp_path / "j.db",
                                   fake=True, concurrency=1)
    summary = await campaign.run(sink)
    return outcomes, summary


def _objects(tmp_path: Path) -> list[object]:
    async def gather() -> list[object]:
        errors = await _client_errors()
        async with _client(PLACED) as client:
            result = await client.fake_call(NUMBER)
        outcomes, summary = await _campaign_objects(tmp_path)
        return [*errors, result, *outcomes, summary, RyzeClient, run_campaign]

    return run_virtual(gather())


def test_the_sample_holds_each_error_class_a_call_can_raise() -> None:
    names = {type(error).__name__ for error in run_virtual(_client_errors())}
    assert names == {"BadRequestError", "AuthenticationError", "PermissionDeniedError",
                     "InstanceNotFoundError", "InstanceNotConnectedError", "ServerError",
                     "RateLimitError", "OutcomeUnknownError", "ConnectionFailedError",
                     "InvalidRequestError", "ClientClosedError", "QuotaTimeoutError"}


def test_objects_round_trip_through_pickle_under_public_paths(tmp_path: Path) -> None:
    objects = _objects(tmp_path)
    for obj in objects:
        kind = obj if isinstance(obj, type) or inspect.isfunction(obj) else type(obj)
        assert kind.__module__ == "ryze_async", kind
        data = pickle.dumps(obj)
        assert b"ryze_async._" not in data, kind  # no private path inside, nested ones neither
        assert TOKEN.encode() not in data
        copy = pickle.loads(data)  # noqa: S301 - our own bytes
        assert type(copy) is type(obj)
        if isinstance(obj, BaseException):
            assert vars(copy) == vars(obj)
            assert copy.args == obj.args
        else:
            assert copy == obj
        assert repr(copy) == repr(obj)
        assert TOKEN not in repr(copy)
    api = [obj for obj in objects if isinstance(obj, APIError)]
    assert all(error.kind == "fake" and error.instance == "inst" for error in api)
    assert all(error.rate_limit is not None and error.rate_limit.remaining == 0 for error in api)


SHOWN = """
import inspect, pickle, sys
def shown(obj):
    named = inspect.isclass(obj) or inspect.isfunction(obj)
    return f"{obj.__module__}.{obj.__qualname__}" if named else repr(obj)
"""


@pytest.mark.infra  # a fresh interpreter: a child process
def test_pickles_load_in_a_fresh_interpreter_through_the_lazy_root(tmp_path: Path) -> None:
    objects = _objects(tmp_path)
    scope: dict[str, object] = {}
    exec(SHOWN, scope)  # noqa: S102 - the same function on both sides
    shown = scope["shown"]
    assert callable(shown)
    code = SHOWN + "print(repr([shown(o) for o in pickle.loads(sys.stdin.buffer.read())]))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(objects), env=env,
                          capture_output=True, check=True, timeout=60)
    expected = [shown(obj) for obj in objects]
    assert "ryze_async.RyzeClient" in expected
    assert done.stdout.decode().strip() == repr(expected)
