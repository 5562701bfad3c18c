"""Test audio: a WAV tone generated in memory, so tests and the demo need no audio file."""

from __future__ import annotations

import io
import math
import struct
import wave

__all__ = ["wav_tone"]


def wav_tone(seconds: float = 1.0, hz: float = 440.0, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of a sine tone (valid audio for ``Media`` and for ffmpeg).

    ``Media.from_bytes(wav_tone(0.1))`` is the audio of a test call; ``seconds`` long, at
    ``hz`` hertz, ``rate`` samples a second.
    """
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate)))
        for i in range(frames)
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    return buf.getvalue()
