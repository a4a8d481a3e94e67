"""`broker.config`: server.properties parsing, overrides, defaults, unknown keys, ignored keys,
and broker-level topic defaults reaching the store."""

from __future__ import annotations

import pytest

from broker.config import BrokerConfig, ConfigError, parse_overrides, read_properties
from broker.server import BrokerThread


def test_properties_read_as_java_does(tmp_path) -> None:
    """server.properties and the tools' config files share one parser with Java's rules: a blank
    separates key and value, escapes are undone, a trailing odd backslash continues the line."""
    from broker.properties import parse_properties
    text = ("num.partitions 3\n"                     # blank as the separator
            "log.dirs  :  /data/a\\:b   \n"           # ':' with blanks; an escaped ':' in the value
            "key\\=with\\ equals=v\n"                  # escaped '=' and blank in the key
            "uni=\\u00e9t\\u00E9\n"
            "cont=a,\\\n   b\n"                      # continuation drops the next line's indent
            "two.backslashes=x\\\\\n"                # an even count does not continue
            "after=1\n"
            "   # indented comment\n")
    assert parse_properties(text) == {
        "num.partitions": "3", "log.dirs": "/data/a:b   ", "key=with equals": "v", "uni": "\u00e9t\u00e9",
        "cont": "a,b", "two.backslashes": "x\\", "after": "1"}
    f = tmp_path / "server.properties"
    f.write_text("num.partitions 3\nlog.dirs=/x   \n")
    assert read_properties(str(f)) == {"num.partitions": "3", "log.dirs": "/x"}   # values trimmed
    assert BrokerConfig.load(str(f))["num.partitions"] == 3
    f.write_text("=oops\n")
    with pytest.raises(ConfigError, match="no key"):
        read_properties(str(f))
    f.write_bytes(b"a=\xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_properties(str(f))


def test_defaults() -> None:
    c = BrokerConfig({})
    assert c.listener.host == "127.0.0.1" and c.listener.port == 9092
    assert c.log_dir == "./data" and c.node_id == 0
    assert c["num.partitions"] == 1 and c["auto.create.topics.enable"] is True
    assert c["offsets.topic.num.partitions"] == 50 and c["group.initial.rebalance.delay.ms"] == 3000
    assert c["socket.request.max.bytes"] == 104857600 and c["connections.max.idle.ms"] == 600000
    assert c["group.min.session.timeout.ms"] == 6000 and c["group.max.session.timeout.ms"] == 1800000
    assert c["offsets.retention.minutes"] == 10080
    assert c.get("offsets.topic.num.partitions") == 50   # the coordinator reads it as a Mapping


def test_properties_file_and_overrides(tmp_path) -> None:
    f = tmp_path / "server.properties"
    f.write_text("# comment\n! other comment\n\nlisteners = PLAINTEXT://0.0.0.0:19092\n"
                 "advertised.listeners=PLAINTEXT://example.com:29092\nbroker.id: 7\n"
                 "log.dirs=/a,/b\nlog.segment.bytes=1048576\nlog.retention.hours=2\n"
                 "message.max.bytes=\\\n  2000\nprocess.roles=broker,controller\nnum.io.threads=8\n")
    assert read_properties(str(f))["message.max.bytes"] == "2000"
    c = BrokerConfig.load(str(f), parse_overrides(["num.partitions=4", "log.flush.interval.messages=1"]))
    assert c.listener.port == 19092 and c.advertised.host == "example.com" and c.advertised.port == 29092
    assert c.node_id == 7 and c.log_dir == "/a" and c["num.partitions"] == 4
    assert c.store_config == {"log.segment.bytes": "1048576", "log.retention.hours": "2", "message.max.bytes": "2000",
                              "log.flush.interval.messages": "1"}
    assert sorted(c.ignored) == ["num.io.threads", "process.roles"]
    assert c.topic_default("segment.bytes") == "1048576"


@pytest.mark.parametrize("settings,needle", [
    ({"zookeeper.connect": "x"}, "zookeeper.connect"),
    ({"no.such.key": "1"}, "no.such.key"),
    ({"num.partitions": "many"}, "num.partitions"),
    ({"num.partitions": "0"}, "num.partitions"),
    ({"listeners": "127.0.0.1:9092"}, "listeners"),
    ({"auto.create.topics.enable": "yes"}, "auto.create.topics.enable"),
    ({"log.segment.bytes": "abc"}, "segment.bytes"),
    ({"default.replication.factor": "3"}, "default.replication.factor"),
])
def test_bad_settings_name_the_key(settings: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        BrokerConfig(settings)


def test_override_syntax() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])
    assert parse_overrides(["a=b=c"]) == {"a": "b=c"}


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        BrokerConfig.load("/no/such/server.properties")


def test_broker_topic_defaults_reach_new_topics(tmp_path) -> None:
    with BrokerThread({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(tmp_path / "d"),
                       "log.segment.bytes": "1048576", "log.retention.ms": "5000", "message.max.bytes": "3000",
                       "offsets.topic.num.partitions": "1"}) as b:
        b.store.create_topic("x", 1)
        cfg = b.store.topic_config("x")
        assert cfg.get("segment.bytes") == 1048576 and cfg.get("retention.ms") == 5000
        assert cfg.get("max.message.bytes") == 3000
