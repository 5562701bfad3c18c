"""The campaign benchmark's input (the CSV, the audio) and its functional checks.

The CSV holds ``size`` distinct numbers, then (with ``extras``) repeats of the first few and a few
invalid lines; the checks compare what the server and the summary saw with what that CSV must give.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import Any

from ryze_async import normalize_number

EXTRAS = ("12345,Too short", "not-a-number,Typo", "123456@g.us,A group")  # 3 invalid entries
REPEATS_OF_FIRST = 5  # the first 5 numbers appear again at the end (duplicates)


def wav_audio() -> bytes:
    """0.1 s of 8 kHz 16-bit mono WAV (1,644 bytes; 2,192 base64 characters on the wire).

    Built here rather than with ``ryze_async.testing.wav_tone``: importing ``testing`` loads the
    fake server and aiohttp, which would inflate the measured process's memory.
    """
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(1600))
    return buf.getvalue()


def raw_number(i: int) -> str:
    return f"+55 11 9{i // 10000:04d}-{i % 10000:04d}"


def write_csv(path: Path, size: int, extras: bool) -> int:
    """A CSV of ``size`` distinct numbers (plus repeats and invalid lines if ``extras``).

    Returns the sum of the normalized numbers as integers: what the server must have seen.
    """
    with path.open("w") as f:
        f.write("number,name\n")
        for i in range(size):
            f.write(f"{raw_number(i)},Person {i}\n")
        if extras:
            for i in range(REPEATS_OF_FIRST):
                f.write(f"{raw_number(i)},Repeat\n")
            f.write("\n".join(EXTRAS) + "\n")
    return sum(int(normalize_number(raw_number(i))) for i in range(size))


def expected_summary(size: int, extras: bool) -> dict[str, int]:
    duplicates, invalid = (REPEATS_OF_FIRST, len(EXTRAS)) if extras else (0, 0)
    return {"total": size + duplicates + invalid, "placed": size, "failed": 0, "unknown": 0,
            "pending": 0, "in_flight": 0, "duplicates": duplicates, "invalid": invalid}


def check_summary(what: str, summary: dict[str, Any], expected: dict[str, int]) -> list[str]:
    wrong = {k: (summary.get(k), v) for k, v in expected.items() if summary.get(k) != v}
    return [f"{what}: summary {k} = {got}, expected {want}" for k, (got, want) in wrong.items()]


def check_server(what: str, stats: dict[str, int], size: int, digits_sum: int) -> list[str]:
    if (stats["placed"], stats["distinct"], stats["max_per_number"], stats["refused"]) != (
        size, size, 1, 0) or stats["digits_sum"] != digits_sum:
        return [f"{what}: the server saw {stats} for {size} numbers (digit sum "
                f"{'right' if stats['digits_sum'] == digits_sum else 'WRONG'}); expected each "
                "number exactly once"]
    return []
