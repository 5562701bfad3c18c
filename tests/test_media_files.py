"""Media paths that are not plain files: refused promptly, never read past the cap (#7.11)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import tracemalloc
import wave
from pathlib import Path

import pytest

from ryze_async import InvalidRequestError, Media
from ryze_async.testing import FakeRyzeServer, wav_tone

from .conftest import ClientFactory

# A failure guard, not a timing assertion: a hang fails the test instead of the whole run.
GUARD = 10.0


def _release_blocked_readers(fifo: Path) -> None:
    # On failure, a thread may still be blocked opening the FIFO: a writer lets it go, so the
    # test fails at the guard instead of hanging the event loop's shutdown.
    with contextlib.suppress(OSError):  # ENXIO: nobody is reading, nothing to release
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


async def test_a_fifo_is_refused_without_hanging(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    fifo = tmp_path / "audio.mp3"
    os.mkfifo(fifo)
    client = make_client(ryze_server)
    try:
        async with asyncio.timeout(GUARD):
            with pytest.raises(InvalidRequestError, match="not a regular file") as info:
                await client.audio_call("5511999999999", media=fifo)
            with pytest.raises(InvalidRequestError, match="not a regular file"):
                await asyncio.to_thread(Media.from_file, fifo)
    finally:
        _release_blocked_readers(fifo)
    assert info.value.field == "media"
    assert ryze_server.requests == []


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/dev/null"])
async def test_a_symlink_to_a_device_is_refused(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, tmp_path: Path, target: str
) -> None:
    link = tmp_path / "audio.wav"
    link.symlink_to(target)
    client = make_client(ryze_server, max_media_bytes=1024)
    async with asyncio.timeout(GUARD):
        with pytest.raises(InvalidRequestError, match="not a regular file"):
            await client.audio_call("5511999999999", media=link)
        with pytest.raises(InvalidRequestError, match="not a regular file"):
            await client.audio_call("5511999999999", media=target)
    assert ryze_server.requests == []


def test_a_directory_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="not a regular file"):
        Media.from_file(tmp_path)
    with pytest.raises(InvalidRequestError, match="cannot read"):
        Media.from_file(tmp_path / "missing.mp3")
    dangling = tmp_path / "dangling.mp3"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidRequestError, match="cannot read"):
        Media.from_file(dangling)


@pytest.mark.parametrize("path", ["a\x00b.mp3", "\udcff.mp3", b"audio.mp3", 3])
def test_unusable_path_values_are_refused(path: object) -> None:
    with pytest.raises(InvalidRequestError):
        Media.from_file(path)  # type: ignore[arg-type]


def test_a_huge_sparse_file_is_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big.wav"
    with big.open("wb") as f:
        f.write(wav_tone(0.01))
        f.truncate(1 << 34)  # 16 GiB of holes: reading it whole would take minutes and RAM
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequestError, match="over the 1048576-byte cap"):
            Media.from_file(big, max_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_a_file_that_grows_after_the_size_check_is_cut_at_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The size the stat reports is not trusted: a file growing between stat and read (or a
    # /proc file reporting 0 bytes) is still read at most cap + 1 bytes.
    path = tmp_path / "growing.wav"
    path.write_bytes(wav_tone(0.01))
    real_fstat = os.fstat

    def small_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        with path.open("ab") as f:
            f.write(b"\0" * 5000)
        return st

    monkeypatch.setattr(os, "fstat", small_fstat)
    with pytest.raises(InvalidRequestError, match="over the 2000-byte cap"):
        Media.from_file(path, max_bytes=2000)


def test_a_regular_file_and_a_symlink_to_one_are_read(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(wav_tone(0.01))
    link = tmp_path / "link.wav"
    link.symlink_to(audio)
    assert Media.from_file(audio).size == Media.from_file(str(link)).size == audio.stat().st_size


def test_wav_tone_is_public_test_audio_the_client_accepts() -> None:
    data = wav_tone(0.25, hz=1000.0, rate=16000)
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        assert wav.getnframes() == 4000
        frames = wav.readframes(4000)
    assert frames.count(b"\x00\x00") < 4000 // 2  # a tone, not silence
    media = Media.from_bytes(data)
    assert (media.format, media.size) == ("wav", len(data))
    assert wav_tone.__module__ == "ryze_async.testing"
