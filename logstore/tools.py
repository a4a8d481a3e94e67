"""Offline tools over log files: `dump-log` (kafka-dump-log.sh's output) and `verify` (a whole
log dir integrity scan). Importable; `broker/cli/logtools.py` only prints what these yield.

dump_files(paths, ...) yields `(stream, line)` pairs, stream "out" or "err", in the shape Kafka's
DumpLogSegments prints:

    Dumping <file>
    Log starting offset: <base>                                           (.log only)
    baseOffset: 0 lastOffset: 2 count: 3 baseSequence: -1 lastSequence: -1 producerId: -1
      producerEpoch: -1 partitionLeaderEpoch: 0 isTransactional: false isControl: false
      deleteHorizonMs: OptionalLong.empty position: 0 CreateTime: 1700000000000 size: 90
      magic: 2 compresscodec: none crc: 123456 isvalid: true             (one line per batch)
    | offset: 0 CreateTime: 1700000000000 keySize: 1 valueSize: 5 sequence: -1 headerKeys: []
      key: k payload: hello                                    (per record, with --print-data-log)
    Found <n> invalid bytes at the end of <name>                          (a torn or bad tail)
    offset: <abs offset> position: <pos>                                  (.index, per entry)
    timestamp: <ts> offset: <abs offset>                                  (.timeindex, per entry)

Options as Kafka's: `skip_record_metadata` prints `| key: .. payload: ..` without the record
metadata; `offsets_decoder` decodes `__consumer_offsets` records (`parse_offsets_record`: Kafka's
`{"type":"1","data":{...}}` key and `{"version":"3","data":{...}}` payload JSON, `<DELETE>` for
a tombstone); `index_sanity_check` runs Kafka's start-up index sanity check instead of dumping
(`<file> passed sanity check.`, or CorruptRecordError with Kafka's message).

verify_dir(path) scans every segment of every partition of a log dir without opening it as a
store (no lock, nothing written), checking each batch's length, magic, CRC, record count and
offset order, and each index against its log (an index entry at a batch that failed its own
check is reported as leading to that damaged batch, not as a bad position). It returns a
`VerifyReport` listing every problem with its file and position. Cost: O(bytes of log) reads,
one CRC pass; record bodies are decoded only for compressed-batch sanity when `deep=True`.
On a log dir in use (its `.lock` held by a store or broker, as /proc/locks shows:
`report.live`) the last segment of each partition is being written: its index files are still
preallocated (zero entries past the used ones) and its tail may be a batch half written, so
neither is reported there; every sealed segment is checked in full.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from . import records as R
from .errors import CorruptRecordError
from .offsets_decoder import parse_offsets_record  # noqa: F401 (part of this module's API)

_CHUNK = 4 << 20
_OFFSET_ENTRY = struct.Struct(">II")
_TIME_ENTRY = struct.Struct(">qI")
_CONTROL_TYPES = {0: "ABORT", 1: "COMMIT", 2: "LEADER_CHANGE", 3: "SNAPSHOT_HEADER", 4: "SNAPSHOT_FOOTER",
                  5: "KRAFT_VERSION", 6: "KRAFT_VOTERS"}

Line = tuple[str, str]  # ("out" | "err", text)


def _bool(b: bool) -> str:
    return "true" if b else "false"


def _text(b: bytes | None) -> str:
    return "" if b is None else bytes(b).decode("utf-8", "replace")


@dataclass
class _Batch:
    position: int
    header: R.BatchHeader
    data: bytes
    valid: bool


def iter_file_batches(path: str, start: int = 0) -> Iterator[tuple[int, R.BatchHeader | None, bytes, str | None]]:
    """(position, header, bytes, problem) of each batch of a `.log` file, read in chunks.

    Ends with `(position, None, b"", reason)` when the file has a tail that is not a whole batch
    (torn write, bad length), so callers can report it. CRC is not checked here.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = start
        while pos < size:
            f.seek(pos)
            chunk = f.read(min(_CHUNK, size - pos))
            advanced = False
            for p, h in R.iter_headers(chunk):
                advanced = True
                yield pos + p, h, chunk[p:p + h.size], None
                nxt = pos + p + h.size
            if advanced:
                pos = nxt
                continue
            # the next batch is larger than the chunk, or the tail is not a batch
            if size - pos < R.HEADER_SIZE:
                yield pos, None, b"", f"{size - pos} bytes at the end are shorter than a batch header"
                return
            h = R.read_header(chunk[:R.HEADER_SIZE] if len(chunk) >= R.HEADER_SIZE else f.read(R.HEADER_SIZE))
            if h.batch_length < R.HEADER_SIZE - R.LOG_OVERHEAD:
                yield pos, None, b"", f"batch length {h.batch_length} is smaller than a batch header"
                return
            if pos + h.size > size:
                yield pos, None, b"", (f"batch of {h.size} bytes runs past the end of the file "
                                       f"({size - pos} bytes left)")
                return
            f.seek(pos)
            data = f.read(h.size)
            yield pos, h, data, None
            pos += h.size


def _crc_ok(data: bytes, h: R.BatchHeader) -> bool:
    return R.crc32c(memoryview(data)[R.CRC_START:h.size]) == h.crc


def _batch_line(pos: int, h: R.BatchHeader, valid: bool) -> str:
    ts_type = "LogAppendTime" if h.log_append_time else "CreateTime"
    horizon = f"OptionalLong[{h.base_timestamp}]" if h.attributes & R.DELETE_HORIZON_BIT else "OptionalLong.empty"
    codec = R.COMPRESSION_NAMES.get(h.compression, str(h.compression))
    return (f"baseOffset: {h.base_offset} lastOffset: {h.last_offset} count: {h.record_count} "
            f"baseSequence: {h.base_sequence} lastSequence: {h.last_sequence} producerId: {h.producer_id} "
            f"producerEpoch: {h.producer_epoch} partitionLeaderEpoch: {h.leader_epoch} "
            f"isTransactional: {_bool(h.is_transactional)} isControl: {_bool(h.is_control)} "
            f"deleteHorizonMs: {horizon} position: {pos} {ts_type}: {h.max_timestamp} size: {h.size} "
            f"magic: {h.magic} compresscodec: {codec} crc: {h.crc} isvalid: {_bool(valid)}")


def _decode_any(data: bytes, h: R.BatchHeader, path: str, pos: int) -> list[R.Record]:
    """Records of a batch, control batches included (decode_batch skips those), CRC or not."""
    if h.is_control:
        body = bytes(data[R.HEADER_SIZE:h.size])
        try:
            return R._decode_records(body, h)  # control batches are never compressed
        except (IndexError, ValueError) as e:
            raise CorruptRecordError(f"malformed control records at position {pos} of {path}: {e}",
                                     path=path, position=pos) from None
    # a batch whose CRC fails is read by the pure decoder, which checks every record's bounds:
    # the compiled one is laxer on damaged records (it may read a different but plausible batch)
    return R.decode_batch(data, 0, verify_crc=False, path=path, base=pos, fast=_crc_ok(data, h))


def _record_line(rec: R.Record, h: R.BatchHeader, print_data: bool, *, skip_metadata: bool = False,
                 parse: "Callable[[R.Record], tuple[str | None, str | None]] | None" = None) -> str:
    """One record as Kafka's DumpLogSegments prints it: `| offset: ..` metadata (unless
    `skip_metadata`), then ` key: .. payload: ..` with `print_data` (not for control records),
    decoded by `parse` (default: UTF-8 text, Kafka's StringDecoder). With `skip_metadata` the
    contents start with `| `, and a record with nothing to print is an empty line, as in Kafka."""
    line = ""
    if not skip_metadata:
        ts_type = "LogAppendTime" if h.log_append_time else "CreateTime"
        delta = rec.offset - h.base_offset
        seq = -1 if h.base_sequence < 0 else (h.base_sequence + delta) & 0x7FFFFFFF
        ksize = -1 if rec.key is None else len(rec.key)
        vsize = -1 if rec.value is None else len(rec.value)
        keys = ",".join(k for k, _ in rec.headers)
        line = (f"| offset: {rec.offset} {ts_type}: {rec.timestamp} keySize: {ksize} valueSize: {vsize} "
                f"sequence: {seq} headerKeys: [{keys}]")
        if h.is_control:
            key = rec.key or b""
            ctype = struct.unpack_from(">h", key, 2)[0] if len(key) >= 4 else -1
            name = _CONTROL_TYPES.get(ctype)
            if name in ("ABORT", "COMMIT") and rec.value is not None and len(rec.value) >= 6:
                epoch = struct.unpack_from(">i", rec.value, 2)[0]
                line += f" endTxnMarker: {name} coordinatorEpoch: {epoch}"
            else:
                line += f" controlType: {name or 'UNKNOWN'}({ctype})"
    if print_data and not h.is_control:
        if parse is None:
            key = None if rec.key is None else _text(rec.key)
            value = None if rec.value is None else _text(rec.value)
        else:
            key, value = parse(rec)
        prefix = "| " if skip_metadata else " "
        if key is not None:
            line += f"{prefix}key: {key}"
            prefix = " "
        if value is not None:
            line += f"{prefix}payload: {value}"
    return line


def dump_log(path: str, *, print_data_log: bool = False, deep_iteration: bool = False,
             max_bytes: int | None = None, skip_record_metadata: bool = False,
             offsets_decoder: bool = False) -> Iterator[Line]:
    """Kafka's DumpLogSegments output for one `.log` file. `offsets_decoder`: records are
    `__consumer_offsets` records, printed decoded (`parse_offsets_record`)."""
    parse = parse_offsets_record if offsets_decoder else None
    name = os.path.basename(path)
    stem = name.split(".")[0]
    if stem.isdigit():
        yield "out", f"Log starting offset: {int(stem)}"
    deep = deep_iteration or print_data_log
    valid_bytes = 0
    last_offset = -1
    gaps: list[tuple[int, int]] = []
    size = os.path.getsize(path)
    limit = size if max_bytes is None else min(size, max_bytes)
    for pos, h, data, problem in iter_file_batches(path):
        if problem is not None or h is None:
            break
        if pos + h.size > limit:
            break
        try:
            R.check_header(h, position=pos, path=path)
            structural = True
        except CorruptRecordError:
            structural = False
        valid = structural and _crc_ok(data, h)
        yield "out", _batch_line(pos, h, valid)
        if deep:
            try:
                recs = _decode_any(data, h, path, pos) if structural else []
            except CorruptRecordError as e:
                yield "err", f"Cannot read records of the batch at position {pos}: {e}"
                recs = []
            for rec in recs:
                if last_offset != -1 and rec.offset != last_offset + 1:
                    gaps.append((last_offset, rec.offset))
                last_offset = rec.offset
                yield "out", _record_line(rec, h, print_data_log, skip_metadata=skip_record_metadata, parse=parse)
        valid_bytes += h.size
    trailing = size - valid_bytes
    if trailing > 0 and max_bytes is None:
        yield "out", f"Found {trailing} invalid bytes at the end of {name}"
    if gaps:
        yield "err", f"Non-consecutive offsets in {os.path.abspath(path)}"
        for a, b in gaps:
            yield "err", f"  {a} is followed by {b}"


def _read_entries(path: str, entry: struct.Struct) -> list[tuple[int, int]]:
    with open(path, "rb") as f:
        data = f.read()
    n = len(data) // entry.size
    return [entry.unpack_from(data, i * entry.size) for i in range(n)]


def _batch_at(log_path: str, position: int) -> R.BatchHeader | None:
    try:
        with open(log_path, "rb") as f:
            f.seek(position)
            b = f.read(R.HEADER_SIZE)
    except FileNotFoundError:
        return None
    if len(b) < R.HEADER_SIZE:
        return None
    return R.read_header(b)


def index_sanity_problem(path: str) -> str | None:
    """Kafka's sanity check of an offset (`.index`) or time (`.timeindex`) index, the one a broker
    runs at start-up to decide whether to rebuild it: None if it passes, else Kafka's message.
    As Kafka reads a closed index, every whole entry counts, the last one included."""
    abspath = os.path.abspath(path)
    stem = os.path.basename(path).split(".")[0]
    base = int(stem) if stem.isdigit() else 0
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".timeindex"):
        n = len(data) // 12
        if n:
            first_ts = struct.unpack_from(">q", data, 0)[0]
            last_ts, last_rel = struct.unpack_from(">qi", data, (n - 1) * 12)
            if last_ts < first_ts:
                return (f"Corrupt time index found, time index file ({abspath}) has non-zero size but the last "
                        f"timestamp is {last_ts} which is less than the first timestamp {first_ts}")
            if base + last_rel < base:
                return (f"Corrupt time index found, time index file ({abspath}) has non-zero size but the last "
                        f"offset is {base + last_rel} which is less than the first offset {base}")
        if len(data) % 12:
            return (f"Time index file {abspath} is corrupt, found {len(data)} bytes which is neither positive "
                    "nor a multiple of 12")
        return None
    n = len(data) // 8
    if n:
        last_rel = struct.unpack_from(">i", data, (n - 1) * 8)[0]
        if base + last_rel < base:
            return (f"Corrupt index found, index file {abspath} has non-zero size but the last offset is "
                    f"{base + last_rel} which is less than the base offset {base}")
    if len(data) % 8:
        return f"Index file {abspath} is corrupt, found {len(data)} bytes which is neither positive nor a multiple of 8"
    return None


def _sanity_check(path: str) -> Iterator[Line]:
    problem = index_sanity_problem(path)
    if problem is not None:
        raise CorruptRecordError(problem, path=path)
    yield "out", f"{path} passed sanity check."


def dump_index(path: str, *, verify_only: bool = False, sanity_only: bool = False) -> Iterator[Line]:
    """Kafka's dump of an offset index: `offset: N position: P` per entry, then mismatches
    against the log (index offset vs the last offset of the batch at that position) on stderr."""
    name = os.path.basename(path)
    stem = name.split(".")[0]
    base = int(stem) if stem.isdigit() else 0
    log_path = os.path.join(os.path.dirname(os.path.abspath(path)), stem + ".log")
    entries = _read_entries(path, _OFFSET_ENTRY)
    if not entries:
        yield "out", f"{path} is empty."
        return
    if sanity_only:
        yield from _sanity_check(path)
        return
    mismatches: list[tuple[int, int]] = []
    for i, (rel, pos) in enumerate(entries):
        off = base + rel
        if rel == 0 and i > 0:
            break  # the zero-filled preallocated tail
        h = _batch_at(log_path, pos)
        log_off = h.last_offset if h is not None else -1
        if log_off != off:
            mismatches.append((off, log_off))
        if not verify_only:
            yield "out", f"offset: {off} position: {pos}"
    if mismatches:
        yield "err", f"Mismatches in :{os.path.abspath(path)}"
        for a, b in mismatches:
            yield "err", f"  Index offset: {a}, log offset: {b}"


def dump_time_index(path: str, *, verify_only: bool = False, sanity_only: bool = False) -> Iterator[Line]:
    """Kafka's dump of a time index: `timestamp: T offset: O` per entry, then what disagrees with
    the log on stderr."""
    if sanity_only:
        yield from _sanity_check(path)
        return
    name = os.path.basename(path)
    stem = name.split(".")[0]
    base = int(stem) if stem.isdigit() else 0
    d = os.path.dirname(os.path.abspath(path))
    log_path = os.path.join(d, stem + ".log")
    entries = _read_entries(path, _TIME_ENTRY)
    ts_mismatch: list[tuple[int, int]] = []
    out_of_order: list[tuple[int, int]] = []
    not_found: list[tuple[int, int]] = []
    batches = [(p, h, data) for p, h, data, prob in iter_file_batches(log_path) if h is not None] \
        if os.path.exists(log_path) else []
    prev = -1
    for i, (ts, rel) in enumerate(entries):
        off = base + rel
        if rel == 0 and i > 0:
            break
        found = next(((p, h, data) for p, h, data in batches if h.last_offset >= off), None)
        if found is None:
            not_found.append((off, -1))
        elif found[1].last_offset != off:
            not_found.append((off, found[1].last_offset))
        else:
            p, h, data = found
            try:
                mx = max((r.timestamp for r in _decode_any(data, h, log_path, p)), default=-1)
            except CorruptRecordError:
                mx = h.max_timestamp
            if mx != ts:
                ts_mismatch.append((ts, mx))
            if prev >= ts:
                out_of_order.append((ts, prev))
        if not verify_only:
            yield "out", f"timestamp: {ts} offset: {off}"
        prev = ts
    ap = os.path.abspath(path)
    if ts_mismatch:
        yield "err", f"Found timestamp mismatch in :{ap}"
        for a, b in ts_mismatch:
            yield "err", f"  Index timestamp: {a}, log timestamp: {b}"
    if out_of_order:
        yield "err", f"Found out of order timestamp in :{ap}"
        for a, b in out_of_order:
            yield "err", f"  Index timestamp: {a}, Previously indexed timestamp: {b}"
    if not_found:
        yield "err", "The following indexed offsets are not found in the log."
        for a, b in not_found:
            yield "err", f"Indexed offset: {a}, found log offset: {b}"


def dump_files(paths: Iterable[str], *, print_data_log: bool = False, deep_iteration: bool = False,
               verify_index_only: bool = False, max_bytes: int | None = None, skip_record_metadata: bool = False,
               offsets_decoder: bool = False, index_sanity_check: bool = False) -> Iterator[Line]:
    """kafka-dump-log.sh over several files, dispatching on the suffix. A file that cannot be
    read raises OSError naming it; an index that fails `index_sanity_check` raises
    CorruptRecordError with Kafka's message (after the files before it were dumped)."""
    for path in paths:
        yield "out", f"Dumping {path}"
        name = os.path.basename(path)
        suffix = name[name.rfind("."):] if "." in name else ""
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        if suffix == ".log":
            yield from dump_log(path, print_data_log=print_data_log, deep_iteration=deep_iteration,
                                max_bytes=max_bytes, skip_record_metadata=skip_record_metadata,
                                offsets_decoder=offsets_decoder)
        elif suffix == ".index":
            yield from dump_index(path, verify_only=verify_index_only, sanity_only=index_sanity_check)
        elif suffix == ".timeindex":
            yield from dump_time_index(path, verify_only=verify_index_only, sanity_only=index_sanity_check)
        else:
            yield "err", f"Ignoring unknown file {path}"


# ---------------------------------------------------------------------------------------- verify

@dataclass
class Problem:
    """One thing wrong: the file, the byte position in it (-1: the whole file), and what."""

    path: str
    position: int
    message: str

    def __str__(self) -> str:
        where = f"{self.path}" + (f" at position {self.position}" if self.position >= 0 else "")
        return f"{where}: {self.message}"


@dataclass
class PartitionSummary:
    name: str
    segments: int = 0
    batches: int = 0
    records: int = 0
    bytes: int = 0
    problems: int = 0
    first_offset: int = -1
    next_offset: int = -1


@dataclass
class VerifyReport:
    path: str
    partitions: list[PartitionSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    live: bool = False  # the dir was open in a store or broker: active segments were checked lightly

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def total_bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)

    @property
    def total_batches(self) -> int:
        return sum(p.batches for p in self.partitions)


def _partition_dirs(root: str) -> list[str]:
    out = []
    for name in sorted(os.listdir(root)):
        full = os.path.join(root, name)
        if not os.path.isdir(full) or name.endswith("-delete"):
            continue
        topic, sep, part = name.rpartition("-")
        if sep and topic and part.isdigit():
            out.append(full)
    return out


def _segment_files(d: str) -> list[tuple[int, str]]:
    segs = []
    for fname in os.listdir(d):
        stem, _, rest = fname.partition(".")
        if rest == "log" and stem.isdigit():
            segs.append((int(stem), os.path.join(d, fname)))
    return sorted(segs)


def dir_in_use(root: str) -> bool:
    """Whether some process holds the flock on `root`/.lock (a store or broker has the dir open).
    Read from /proc/locks, so it never takes the lock itself (a brief probe lock could make a
    store opening at that moment fail); False where /proc/locks cannot be read."""
    try:
        st = os.stat(os.path.join(root, ".lock"))
        with open("/proc/locks") as f:
            held = f.read()
    except OSError:
        return False
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any(line.split()[1:2] == ["FLOCK"] and ident in line.split() for line in held.splitlines())


def log_dir_size(root: str) -> int:
    """Bytes of `.log` files under a log dir (what a verify scan reads)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"log dir {root} does not exist")
    return sum(os.path.getsize(p) for d in _partition_dirs(root) for _b, p in _segment_files(d))


def _verify_index(seg_base: int, log_path: str, boundaries: dict[int, int], report: VerifyReport,
                  failed: dict[int, tuple[int, str]] | None = None) -> int:
    """Check the offset and time index beside a `.log` against the batches found in it
    (`boundaries`: good batch start position → last offset; `failed`: start position → (last
    offset, what is wrong) of batches whose header reads but that failed a check, reported
    already). An entry pointing at a failed batch points at a batch start: it is reported as
    leading to that damaged batch, not as a bad position. Returns problems found."""
    failed = failed or {}
    stem = log_path[:-len(".log")]
    found = 0
    ipath = stem + ".index"
    tpath = stem + ".timeindex"
    for path, width in ((ipath, 8), (tpath, 12)):
        if os.path.exists(path) and os.path.getsize(path) % width:
            size = os.path.getsize(path)
            report.problems.append(Problem(path, size - size % width,
                                           f"index file is {size} bytes, not a whole number of "
                                           f"{width}-byte entries: torn or truncated"))
            found += 1
    if os.path.exists(ipath):
        prev_rel, prev_pos = -1, -1
        for i, (rel, pos) in enumerate(_read_entries(ipath, _OFFSET_ENTRY)):
            if rel == 0 and pos == 0 and i > 0:
                break  # preallocated zero tail of an active segment
            if rel <= prev_rel or pos <= prev_pos:
                report.problems.append(Problem(ipath, i * 8, f"entry {i} (offset {seg_base + rel}, position {pos}) "
                                                            "is not after the previous entry"))
                found += 1
                break
            last = boundaries.get(pos)
            if last is None and pos in failed:
                flast, why = failed[pos]
                agrees = ("whose header agrees" if flast == seg_base + rel else
                          f"whose header says it ends at offset {flast}")
                report.problems.append(Problem(ipath, i * 8, f"entry {i} (offset {seg_base + rel}) points at the batch "
                                                            f"at position {pos} of {log_path}, {agrees}, but that "
                                                            f"batch is damaged ({why}, reported above)"))
                found += 1
            elif last is None:
                report.problems.append(Problem(ipath, i * 8, f"entry {i} points at position {pos} of {log_path}, "
                                                            "which is not the start of a batch"))
                found += 1
            elif last != seg_base + rel:
                report.problems.append(Problem(ipath, i * 8, f"entry {i} says offset {seg_base + rel} but the batch "
                                                            f"at position {pos} ends at offset {last}"))
                found += 1
            prev_rel, prev_pos = rel, pos
    if os.path.exists(tpath):
        prev_ts = -1
        max_off = max([*boundaries.values(), *(lo for lo, _why in failed.values())], default=seg_base - 1)
        for i, (ts, rel) in enumerate(_read_entries(tpath, _TIME_ENTRY)):
            if ts == 0 and rel == 0 and i > 0:
                break
            if ts < prev_ts:
                report.problems.append(Problem(tpath, i * 12, f"entry {i} timestamp {ts} is before the previous "
                                                             f"entry's {prev_ts}"))
                found += 1
                break
            if seg_base + rel > max_off:
                report.problems.append(Problem(tpath, i * 12, f"entry {i} offset {seg_base + rel} is past the "
                                                             f"last offset {max_off} of {log_path}"))
                found += 1
                break
            prev_ts = ts
    return found


def verify_dir(root: str, *, deep: bool = False,
               progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Scan every partition of the log dir `root` (read-only, no lock). `progress(n)` is called
    with bytes scanned as the scan advances. `deep` also decodes every record (decompressing)."""
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise NotADirectoryError(f"{root} is not a log dir: it is a file (a log dir holds <topic>-<partition> dirs)")
        raise FileNotFoundError(f"log dir {root} does not exist")
    report = VerifyReport(os.path.abspath(root), live=dir_in_use(root))
    for d in _partition_dirs(root):
        summary = PartitionSummary(os.path.basename(d))
        report.partitions.append(summary)
        expected_next: int | None = None
        segments = _segment_files(d)
        for i, (base, log_path) in enumerate(segments):
            next_base = segments[i + 1][0] if i + 1 < len(segments) else None
            being_written = report.live and next_base is None
            summary.segments += 1
            boundaries: dict[int, int] = {}
            failed: dict[int, tuple[int, str]] = {}
            for pos, h, data, tail in iter_file_batches(log_path):
                if h is None:
                    if being_written and tail is not None and ("shorter than a batch header" in tail
                                                               or "runs past the end" in tail):
                        break  # an append in progress, not damage
                    report.problems.append(Problem(log_path, pos, f"incomplete or invalid tail: {tail}"))
                    summary.problems += 1
                    if progress:
                        progress(os.path.getsize(log_path) - pos)
                    break
                if progress:
                    progress(h.size)
                summary.bytes += h.size
                summary.batches += 1
                problem = None
                try:
                    R.check_header(h, position=pos, path=log_path)
                except Exception as e:  # CorruptRecordError, UnsupportedForMessageFormatError
                    # the header itself is garbage, so its length cannot be trusted either: what
                    # follows is not batches; report it once instead of a cascade of junk
                    rest = os.path.getsize(log_path) - pos
                    report.problems.append(Problem(log_path, pos, f"{str(e).split(' at position ')[0]}; the "
                                                                  f"remaining {rest} bytes of the segment are "
                                                                  "unreadable"))
                    summary.problems += 1
                    if progress:
                        progress(rest - h.size)
                    break
                if not _crc_ok(data, h):
                    actual = R.crc32c(memoryview(data)[R.CRC_START:h.size])
                    problem = f"CRC mismatch: stored {h.crc:#010x}, computed {actual:#010x}"
                if problem is None and next_base is not None and h.last_offset >= next_base:
                    # baseOffset is not covered by the CRC: a damaged one shows up as a batch
                    # outside its own segment, which is blamed here rather than on the next file
                    problem = (f"batch offsets {h.base_offset}..{h.last_offset} run past the next "
                               f"segment's base offset {next_base}")
                if problem is None and h.base_offset < base:
                    problem = f"batch base offset {h.base_offset} is below the segment's base offset {base}"
                if problem is None and expected_next is not None and h.base_offset < expected_next:
                    problem = (f"batch offsets {h.base_offset}..{h.last_offset} overlap the previous batch, "
                               f"which ended at {expected_next - 1}")
                if problem is None and deep:
                    try:
                        recs = _decode_any(data, h, log_path, pos)
                        if not h.is_control and len(recs) != h.record_count:
                            problem = f"header says {h.record_count} records, the batch holds {len(recs)}"
                    except CorruptRecordError as e:
                        problem = str(e)
                if problem is not None:
                    report.problems.append(Problem(log_path, pos, f"offsets {h.base_offset}..{h.last_offset}: {problem}"))
                    summary.problems += 1
                    failed[pos] = (h.last_offset, problem.split(":")[0])
                else:
                    summary.records += h.record_count
                    if summary.first_offset < 0:
                        summary.first_offset = h.base_offset
                    expected_next = h.last_offset + 1
                    summary.next_offset = expected_next
                    boundaries[pos] = h.last_offset
            if not being_written:  # an active segment's indexes are preallocated and changing
                summary.problems += _verify_index(base, log_path, boundaries, report, failed)
    return report


__all__ = ["dump_files", "dump_log", "dump_index", "dump_time_index", "iter_file_batches", "verify_dir",
           "dir_in_use", "log_dir_size", "VerifyReport", "Problem", "PartitionSummary", "parse_offsets_record",
           "index_sanity_problem"]
