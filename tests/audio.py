"""The leading bytes of one real file of each audio container the client recognises."""

from __future__ import annotations

MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + b"\x00" * 64
AUDIO_SAMPLES: dict[str, bytes] = {
    "mp3": MP3,
    "ogg": b"OggS\x00\x02" + b"\x00" * 32,
    "wav": b"RIFF\x24\x08\x00\x00WAVEfmt " + b"\x00" * 32,
    "m4a": b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 32,
    "flac": b"fLaC\x00\x00\x00\x22" + b"\x00" * 32,
    "amr": b"#!AMR\n" + b"\x00" * 32,
    "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81" + b"\x00" * 32,
    "aac": b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 32,
}
# An mp3 frame without an ID3 tag: sync bits, MPEG-1 Layer III.
BARE_MP3_FRAME = b"\xff\xfb\x90\x64" + b"\x00" * 32
