"""What test modules running the broker in-process (`BrokerThread`) share: `module_broker(...)`,
the broker a module-scoped fixture yields, and `unique_topic(prefix)`.

    @pytest.fixture(scope="module")
    def broker(tmp_path_factory):
        with module_broker(tmp_path_factory, "apis", {"num.partitions": "3"}) as b:
            yield b
"""

from __future__ import annotations

import uuid

from broker.server import BrokerThread


def module_broker(tmp_path_factory, name: str, props: dict[str, str]) -> BrokerThread:
    """A broker on 127.0.0.1 (a free port) with its log dir in a new temp dir named after `name`,
    one __consumer_offsets partition and `props` on top; started and stopped by `with`."""
    d = tmp_path_factory.mktemp(name)
    return BrokerThread({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(d / "data"),
                         "offsets.topic.num.partitions": "1", **props})


def unique_topic(prefix: str) -> str:
    """`prefix`-<8 hex digits>: a topic name no other test of the module uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
