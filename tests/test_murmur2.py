"""murmur2 and the default partitioner against the Java client's results.

Vectors: Apache Kafka's UtilsTest.testMurmur2 (Java `Utils.murmur2`, signed int32). The
reference implementation for random keys is kafka-python's port of the Java partitioner, which
returns the same hash as an unsigned 32-bit value.
"""

from __future__ import annotations

import random

import pytest
from kafka.partitioner.default import murmur2 as kp_murmur2

from logstore.client import DefaultPartitioner, murmur2, partition_for_key, to_positive

JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key,expected", sorted(JAVA_VECTORS.items()))
def test_java_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_every_tail_length_matches_reference() -> None:
    rng = random.Random(7)
    for n in list(range(0, 40)) + [255, 256, 1000, 4096]:
        for _ in range(5):
            key = bytes(rng.randrange(256) for _ in range(n))
            assert murmur2(key) & 0xFFFFFFFF == kp_murmur2(key), (n, key)


def test_to_positive_clears_sign_bit_not_abs() -> None:
    # Java's Utils.toPositive is `n & 0x7fffffff`; abs() would differ for every negative hash
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(1 << 31)) == 0
    assert to_positive(-973932308) == (-973932308) & 0x7FFFFFFF != abs(-973932308)


def test_partition_for_key_matches_kafka_python_for_many_keys() -> None:
    # kafka-python's DefaultPartitioner.partition: (murmur2(key) & 0x7fffffff) % len(partitions)
    for n in (1, 2, 3, 7, 12, 50, 100):
        for i in range(300):
            key = f"key-{i}".encode()
            assert partition_for_key(key, n) == (kp_murmur2(key) & 0x7FFFFFFF) % n, (key, n)


def test_known_partitions_of_java_client() -> None:
    # toPositive(murmur2(k)) % n as the Java producer computes it, from the vectors above
    for key, h in JAVA_VECTORS.items():
        for n in (3, 10, 50):
            assert partition_for_key(key, n) == (h & 0x7FFFFFFF) % n


def test_empty_key_is_hashed_not_sticky() -> None:
    p = DefaultPartitioner()
    assert p.partition("t", b"", 10) == partition_for_key(b"", 10)


def test_null_keys_are_sticky_until_a_batch_is_full() -> None:
    p = DefaultPartitioner(batch_size=1000, rng=random.Random(1))
    first = p.partition("t", None, 8)
    for _ in range(9):
        assert p.partition("t", None, 8) == first
        p.on_append("t", first, 100)
    p.on_append("t", first, 100)  # 1000 bytes: the batch is full
    second = p.partition("t", None, 8)
    assert second != first
    # other topics have their own sticky partition
    p.partition("u", None, 8)
    assert p.partition("t", None, 8) == second


def test_bad_partition_count() -> None:
    with pytest.raises(ValueError, match="positive"):
        partition_for_key(b"k", 0)
