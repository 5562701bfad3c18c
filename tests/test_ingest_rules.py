"""#17: the ingest and resume rules have one home (``journal/events.py``), pure: rows in,
decisions out. Both stores and the dry run apply them; these pin the decisions themselves."""

from __future__ import annotations

from ryze_async._campaign.journal.events import Batch, Known, resumed, swept


def _digits(raw: str) -> str:
    if not raw.isdigit():
        raise ValueError("not a number")
    return raw


def test_each_entry_decided_in_input_order() -> None:
    batch = Batch.read([(1, "5511900000001"), (2, "x"), (3, "5511900000002"),
                        (4, "5511900000001"), (5, "5511900000003"), (6, "5511900000004")],
                       _digits)
    assert batch.invalid == [(2, "x", "not a number")]
    known = {"5511900000002": Known("placed", 1), "5511900000003": Known("skipped", 1),
             "5511900000004": Known("pending", 2)}
    decided = batch.decide(known, pass_no=2)
    assert [(d.decision, d.line) for d in decided] == [
        ("added", 1), ("known", 3), ("duplicate", 4), ("restored", 5), ("duplicate", 6)]


def test_a_pass_sweeps_only_pending_rows_it_did_not_see() -> None:
    assert swept("pending", seen=1, pass_no=2)
    assert not swept("pending", seen=2, pass_no=2)
    for state in ("placed", "failed", "unknown", "sending", "skipped"):
        assert not swept(state, seen=1, pass_no=2)


def test_resume_never_redials_what_may_have_been_sent() -> None:
    assert resumed("sending", ()) == "unknown"
    assert resumed("sending", ("unknown",)) == "pending"
    assert resumed("failed", ("failed",)) == "pending"
    assert resumed("placed", ("failed", "unknown")) == "placed"
