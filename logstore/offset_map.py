"""The cleaner's key map: key digest → latest offset, in one fixed numpy buffer.

Owns the 128-bit key digest (`hash_spans`, `hash_keys`) and `OffsetMap`. Used by one cleaning at
a time (cleaner.py); nothing here touches files.

Layout: one preallocated buffer of `log.cleaner.dedupe.buffer.size` bytes, `ENTRY_BYTES` (24)
per slot, as three flat arrays of `slots` entries (1-D arrays gather faster in numpy than
24-byte rows):
    h1  u64   first 64 bits of the key's digest
    h2  u64   second 64 bits
    off i64   latest offset of the key; -1 = empty slot
Invariants: `slots` is prime and >= 3; `size` (occupied slots) <= `capacity` = 90% of `slots`
(Kafka's load factor); `latest_offset` is the last offset `put_many` took (-1 after `clear`).
Open addressing with double hashing: a digest probes from `h1 % slots` in steps of
`h2 % (slots - 1) + 1`. Lookups and inserts run for a whole chunk of records at a time.

Digest: MurmurHash3-x64-128's mixing over the key's 8-byte little-endian words, seeded at
random per process, all keys of a chunk at once; keys over `MAX_VECTOR_KEY` bytes: Python's
keyed SipHash plus CRC-32 and length. A key always takes the same path, so its digest is one
function of its bytes. Kafka keeps 16 bytes of MD5; either way two keys with the same digest
would make the older one's newest record look superseded (probability ~ keys^2 / 2^129 for the
vectorised path). The vectorised path reads 8 bytes at a time, so the buffer holding the keys
must have `KEY_PAD` readable bytes after the last one.
"""

from __future__ import annotations

import os
import zlib
from typing import Sequence

import numpy as np

ENTRY_BYTES = 24
MAX_LOAD_FACTOR = 0.9
MAX_VECTOR_KEY = 64  # longer keys are hashed one by one in Python
KEY_PAD = 80  # zero bytes after a buffer's keys: vectorised reads may run past the last one


# ------------------------------------------------------------------------------ the digest

_U64 = np.uint64
_C1, _C2 = _U64(0x87C37B91114253D5), _U64(0x4CF5AD432745937F)
_F1, _F2 = _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)
_N1, _N2, _FIVE = _U64(0x52DCE729), _U64(0x38495AB5), _U64(5)
_SEED1, _SEED2 = (_U64(x) for x in np.frombuffer(os.urandom(16), dtype=np.uint64))  # per process
_BYTE_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << _U64(r)) | (x >> _U64(64 - r))


def _fmix(h: np.ndarray) -> np.ndarray:
    h ^= h >> _U64(33)
    h *= _F1
    h ^= h >> _U64(33)
    h *= _F2
    h ^= h >> _U64(33)
    return h


def hash_spans(arr: np.ndarray, kp: np.ndarray, kl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map's two 64-bit digests (h1, h2) of the keys arr[kp:kp+kl] (kl >= 0; `arr` must have
    `KEY_PAD` readable bytes after every key). Keys up to MAX_VECTOR_KEY bytes: MurmurHash3-x64-128's
    mixing over 8-byte words, seeded per process, all keys at once in numpy; longer keys: Python's
    keyed `hash` and CRC-32 with the length. A key always takes the same path, so its digest is
    one function of its bytes."""
    n = len(kp)
    h1 = np.full(n, _SEED1, dtype=np.uint64)
    h2 = np.full(n, _SEED2, dtype=np.uint64)
    if n == 0:
        return h1, h2
    short = kl <= MAX_VECTOR_KEY
    ks = kl[short]
    width = int(ks.max()) if len(ks) else 0
    words = (width + 7) // 8
    if words:
        # every 8-byte window of the buffer as one little-endian u64 (a strided view, no copy)
        u64 = np.ndarray((len(arr) - 7,), dtype="<u8", buffer=arr, strides=(1,))
        kps = kp[short]
        a1, a2 = h1[short], h2[short]
        uniform = bool((ks == width).all())
        with np.errstate(over="ignore"):
            for j in range(words):
                left = ks - 8 * j  # bytes of the key from this word on
                w = u64[kps + 8 * j]
                if not uniform or (width - 8 * j) < 8:
                    w &= _BYTE_MASKS[np.clip(left, 0, 8)]
                k1 = _rotl(w * _C1, 31) * _C2
                k2 = _rotl(w * _C2, 33) * _C1
                n1 = _rotl(a1 ^ k1, 27) * _FIVE + _N1
                n2 = _rotl(a2 ^ k2, 31) * _FIVE + _N2
                if uniform:
                    a1, a2 = n1, n2
                else:
                    live = left > 0
                    a1 = np.where(live, n1, a1)
                    a2 = np.where(live, n2, a2)
        h1[short], h2[short] = a1, a2
    with np.errstate(over="ignore"):
        lens = kl.astype(np.uint64)
        h1 ^= lens
        h2 ^= lens
        h1 += h2
        h2 += h1
        h1 = _fmix(h1)
        h2 = _fmix(h2)
        h1 += h2
        h2 += h1
    if not short.all():
        raw = arr.tobytes() if not isinstance(arr, bytes) else arr
        for i in np.flatnonzero(~short).tolist():
            key = raw[kp[i]:kp[i] + kl[i]]
            h1[i] = hash(key) & 0xFFFFFFFFFFFFFFFF
            h2[i] = zlib.crc32(key) | (len(key) << 32)
    return h1, h2


def hash_keys(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """`hash_spans` of a list of keys (the same digests the cleaner computes in place)."""
    buf = b"".join(keys) + bytes(KEY_PAD)
    kl = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    kp = np.zeros(len(keys), dtype=np.int64)
    if len(keys) > 1:
        np.cumsum(kl[:-1], out=kp[1:])
    return hash_spans(np.frombuffer(buf, dtype=np.uint8), kp, kl)


# ------------------------------------------------------------------------------ the map

def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True


def _prime_at_most(n: int) -> int:
    while n > 2 and not _is_prime(n):
        n -= 1
    return max(n, 2)


class OffsetMap:
    """key digest → latest offset, in a fixed buffer of `memory` bytes (see module docstring).

    Three flat arrays rather than 24-byte rows: numpy gathers 1-D arrays faster, which matters
    more here than the extra cache lines. `put_many` O(n log n) for n records (a sort to
    deduplicate) plus ~1/(1-load) vectorised probe rounds; `get_many` O(n) plus probe rounds.
    Not thread-safe: one cleaning at a time uses it.
    """

    def __init__(self, memory: int, load_factor: float = MAX_LOAD_FACTOR) -> None:
        slots = memory // ENTRY_BYTES
        if slots < 3:
            raise ValueError(f"dedupe buffer of {memory} bytes holds fewer than 3 entries of {ENTRY_BYTES} bytes")
        self.slots = _prime_at_most(slots)
        self._buf = np.empty(self.slots * 3, dtype=np.uint64)
        s = self.slots
        self._h1 = self._buf[:s]
        self._h2 = self._buf[s:2 * s]
        self._off = self._buf[2 * s:].view(np.int64)
        self.capacity = max(1, int(self.slots * load_factor))
        self.size = 0
        self.latest_offset = -1
        self._cleared = False
        self.clear()

    @property
    def nbytes(self) -> int:
        """Bytes the map occupies: always <= the memory it was given."""
        return self._buf.nbytes

    def clear(self) -> None:
        """Empty the map (every slot -1); its memory stays."""
        if self.size or not self._cleared:
            self._off.fill(-1)
            self._cleared = True
        self.size = 0
        self.latest_offset = -1

    @property
    def utilization(self) -> float:
        return self.size / self.slots

    def _probe_start(self, h1: np.ndarray, h2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.slots
        return (h1 % np.uint64(s)).astype(np.int64), (h2 % np.uint64(s - 1)).astype(np.int64) + 1

    def get_many(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """Latest offset of each key digest, -1 where absent."""
        n = len(h1)
        out = np.full(n, -1, dtype=np.int64)
        if n == 0 or self.size == 0:
            return out
        S = self.slots
        H1, H2, OFF = self._h1, self._h2, self._off
        p, st = self._probe_start(h1, h2)
        q1, q2, idx = h1, h2, np.arange(n)
        while True:
            o = OFF[p]
            empty = o < 0
            hit = ~empty & (H1[p] == q1) & (H2[p] == q2)
            if hit.any():
                out[idx[hit]] = o[hit]
            go = ~(empty | hit)
            if not go.any():
                return out
            q1, q2, idx, st = q1[go], q2[go], idx[go], st[go]
            p = p[go] + st
            p[p >= S] -= S

    def put_many(self, h1: np.ndarray, h2: np.ndarray, offsets: np.ndarray) -> int:
        """Put (digest, offset) pairs, given in offset order, until the map is full: returns how
        many of them (a prefix) went in. `latest_offset` becomes the last one put."""
        n = len(h1)
        if n == 0:
            return 0
        order, starts = _group(h1, h2)
        distinct = int(np.count_nonzero(starts))
        take = n
        if self.size + distinct > self.capacity:
            # may not all fit: count the keys that are new to the map, in offset order
            first = np.zeros(n, dtype=bool)
            first[order[starts]] = True
            new = first & (self.get_many(h1, h2) < 0)
            room = self.capacity - self.size
            if int(new.sum()) > room:
                take = int(np.searchsorted(np.cumsum(new), room, side="right"))
                if take == 0:
                    return 0
                h1, h2, offsets = h1[:take], h2[:take], offsets[:take]
                order, starts = _group(h1, h2)
        # the last of each run of equal keys is that key's newest offset
        ends = np.empty(len(order), dtype=bool)
        ends[-1] = True
        ends[:-1] = starts[1:]
        last = order[ends]
        self._insert(h1[last], h2[last], offsets[last])
        self.latest_offset = int(offsets[take - 1])
        return take

    def _insert(self, q1: np.ndarray, q2: np.ndarray, qo: np.ndarray) -> None:
        """Upsert distinct digests."""
        S = self.slots
        H1, H2, OFF = self._h1, self._h2, self._off
        p, st = self._probe_start(q1, q2)
        while len(q1):
            o = OFF[p]
            empty = o < 0
            hit = ~empty & (H1[p] == q1) & (H2[p] == q2)
            if hit.any():
                OFF[p[hit]] = qo[hit]
            placed = np.zeros(len(q1), dtype=bool)
            ei = np.flatnonzero(empty)
            if len(ei):
                # several keys may reach the same empty slot this round: the first one wins,
                # the others see it occupied next round and probe on
                _, firsts = np.unique(p[ei], return_index=True)
                win = ei[firsts]
                slots = p[win]
                H1[slots] = q1[win]
                H2[slots] = q2[win]
                OFF[slots] = qo[win]
                placed[win] = True
                self.size += len(win)
            left = ~(hit | placed)
            if not left.any():
                return
            advance = (~empty)[left]
            q1, q2, qo, st, p = q1[left], q2[left], qo[left], st[left], p[left]
            p[advance] += st[advance]
            p[p >= S] -= S


def _group(h1: np.ndarray, h2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): a stable sort of the digests and where each run of equal ones starts."""
    order = np.argsort(h1, kind="stable")
    s1, s2 = h1[order], h2[order]
    starts = np.empty(len(order), dtype=bool)
    starts[0] = True
    np.not_equal(s1[1:], s1[:-1], out=starts[1:])
    same1 = ~starts[1:]
    if (same1 & (s2[1:] != s2[:-1])).any():
        # equal h1 with different h2 (practically never): sort on both so equal keys are adjacent
        order = np.lexsort((h2, h1))
        s1, s2 = h1[order], h2[order]
        np.not_equal(s1[1:], s1[:-1], out=starts[1:])
        starts[1:] |= s2[1:] != s2[:-1]
    return order, starts

