"""Test support for code using ryze_async: a fake RyzeAPI server and its pytest fixtures.

```python
from ryze_async.testing import FakeRyzeServer, Fault

async with FakeRyzeServer(rate_limit=2) as server:
    ...  # point the client at server.url
    server.fail_next(Fault.DROP_AFTER_READ)
    assert len(server.placed_calls) == 1
```

With pytest-asyncio installed, the fixtures ``ryze_server`` and ``ryze_server_factory`` are
available in every test (see `ryze_async.testing._plugin`). `run_virtual` runs a coroutine
on an event loop whose clock is virtual, so waits of minutes (quota, backoff) take no real time.
`MockTransport` answers a client's requests from a function: ``RyzeClient(transport=...)``.
`RedisServer` starts a throw-away ``redis-server`` on a free loopback port, for tests of the
shared quota (``RyzeClient(quota_url=server.url)``). `wav_tone` makes test audio in memory.
"""

from .._public import public
from .._transports._mock import MockRequest, MockResponse, MockTransport
from ._audio import wav_tone
from ._faults import Fault
from ._records import HeaderDict, RecordedRequest
from ._redis_server import RedisServer
from ._server import FakeRyzeServer, ServerFactory
from ._virtual_time import VirtualTimeLoop, run_virtual

__all__ = [
    "FakeRyzeServer",
    "Fault",
    "HeaderDict",
    "MockRequest",
    "MockResponse",
    "MockTransport",
    "RecordedRequest",
    "RedisServer",
    "ServerFactory",
    "VirtualTimeLoop",
    "run_virtual",
    "wav_tone",
]

# Shown and pickled as ``ryze_async.testing.X`` (``public``): this package imports every one of
# its names eagerly, and any of its modules runs this file first.
for _name in __all__:
    public(globals()[_name], __name__)
del _name
