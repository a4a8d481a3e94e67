"""`logstore consumer-groups --reset-offsets`: kafka-consumer-groups.sh's reset scenarios, its
reset plan CSV (`--export`, `--from-file`) and its parsers for `--to-datetime` / `--by-duration`.

Owns: the scenarios (--to-offset, --to-datetime, --by-duration, --to-earliest, --to-latest,
--to-current, --shift-by, --from-file) and the orders Kafka names them in (`SCENARIOS`: the order
its option checks run in; `SCENARIOS_LISTED`: the order of the Java HashSet its messages print);
`parse_datetime` (Kafka's Utils.getDateTime: `yyyy-MM-ddTHH:mm:ss.SSS`, then `Z`, `+HH:MM` or
`+HH`; no zone is UTC, as Kafka appends `Z`); `parse_duration` (java.time.Duration.parse);
`read_plan` / `plan_csv` (the `topic,partition,offset` / `group,topic,partition,offset` CSV,
quoted as Jackson's CSV writer quotes); `reset_offsets` (the plan per group, committed only with
--execute, printed as Kafka's GROUP TOPIC PARTITION NEW-OFFSET table or as the CSV).

Invariants: values are parsed before a broker or log dir is opened (`prepare`); a new offset
from --to-offset, --shift-by or --from-file is clamped to the partition's offsets with a warning
on stderr (Kafka's log4j WARN); a timestamp with no record at or after it falls back to the
latest offset with Kafka's `Warn:` line; with --export stdout holds only the CSV (Kafka's
`Warn:` / `Error: No reset plan` lines go to stderr then). Rows are sorted by topic and
partition, groups kept in the order asked (Kafka prints Java HashMap order).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from .common import ToolError

# (dest, Kafka's option name) of the reset scenarios, in the order Kafka checks them
SCENARIOS = [("to_offset", "to-offset"), ("to_datetime", "to-datetime"), ("by_duration", "by-duration"),
             ("to_earliest", "to-earliest"), ("to_latest", "to-latest"), ("to_current", "to-current"),
             ("shift_by", "shift-by"), ("from_file", "from-file")]
# the same names in the iteration order of Kafka's HashSet of them (joptsimple's OptionSpec hashes
# its names list): the order of "requires one of the following scenarios" and of the second name in
# "can't be used with"
SCENARIOS_LISTED = ["to-offset", "to-current", "to-datetime", "from-file", "by-duration", "to-earliest",
                    "to-latest", "shift-by"]
_FAILED = "Executing consumer group command failed due to "
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INSTANT_MIN_S, _INSTANT_MAX_S = -31557014167219200, 31556889864403199  # java.time.Instant's range
_CSV_MAX_UNQUOTED = 24  # Jackson's CsvEncoder quotes longer strings (MAX_QUOTE_CHECK)
_CSV_MIN_SAFE = ord(",") + 1  # ... and any string with a character below this one


def given(args: argparse.Namespace, dest: str) -> bool:
    v = getattr(args, dest, None)
    return v is not None and v is not False


def scenario_conflict(args: argparse.Namespace) -> str | None:
    """Kafka's message for two scenarios on one command line (None if at most one is given)."""
    used = [name for dest, name in SCENARIOS if given(args, dest)]
    if len(used) < 2:
        return None
    other = next(n for n in SCENARIOS_LISTED if n in used and n != used[0])
    return f'Option "[{used[0]}]" can\'t be used with option "[{other}]"'


def missing_scenario_message() -> str:
    return ("Option '[reset-offsets]' requires one of the following scenarios: ["
            + ", ".join(f"[{n}]" for n in SCENARIOS_LISTED) + "]")


# -- --to-datetime: Kafka's Utils.getDateTime (SimpleDateFormat, non-lenient) ---------------------

_DT_FIELDS = ("y", "-", "M", "-", "d", "T", "H", ":", "m", ":", "s", ".", "S")
_NUMBER = re.compile(r"-?[0-9]+")


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _parse_pattern(text: str, zone_letters: int) -> int | None:
    """`text` by SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSS" + "X" * zone_letters), not lenient:
    epoch milliseconds, or None where Java throws ParseException. As Java: a number field takes
    any count of digits (`.5` is 5 ms), spaces before a field are skipped, text after the zone
    is ignored; `X` reads `Z` or `+HH` (so `+0530` is +05:00), `XXX` reads `Z` or `+HH:MM`."""
    pos, n, vals = 0, len(text), []
    for f in _DT_FIELDS:
        if f in "-T:.":
            if pos >= n or text[pos] != f:
                return None
            pos += 1
            continue
        while pos < n and text[pos] in " \t":
            pos += 1
        m = _NUMBER.match(text, pos)
        if m is None:
            return None
        vals.append(int(m.group()))
        pos = m.end()
    while pos < n and text[pos] in " \t":
        pos += 1
    if pos >= n:
        return None
    if text[pos] == "Z":
        offset_min = 0
    elif text[pos] in "+-":
        z = re.match(r"([0-9]{2}):([0-9]{2})" if zone_letters == 3 else r"([0-9]{2})", text[pos + 1:])
        if z is None:
            return None
        hours, minutes = int(z.group(1)), int(z.group(2)) if zone_letters == 3 else 0
        if hours > 23 or minutes > 59:
            return None
        offset_min = (hours * 60 + minutes) * (1 if text[pos] == "+" else -1)
    else:
        return None
    y, mo, d, h, mi, s, ms = vals
    if not (1 <= y <= 292278994 and 1 <= mo <= 12 and 1 <= d <= _month_days(y, mo) and 0 <= h <= 23
            and 0 <= mi <= 59 and 0 <= s <= 59 and 0 <= ms <= 999):
        return None
    return (((_days_from_civil(y, mo, d) * 24 + h) * 60 + mi - offset_min) * 60 + s) * 1000 + ms


def parse_datetime(text: str) -> int:
    """`--to-datetime` as Kafka's Utils.getDateTime reads it: epoch milliseconds. ToolError with
    Kafka's message otherwise."""
    parts = text.split("T")
    while parts and parts[-1] == "":  # Java's String.split drops trailing empty strings
        parts.pop()
    if len(parts) < 2:
        raise ToolError(_FAILED + "java.text.ParseException: Error parsing timestamp. It does not contain a 'T' "
                                  "according to ISO8601 format")
    if not any(c in parts[1] for c in "+-Z"):
        text += "Z"  # no zone: UTC
    for letters in (3, 1):
        ms = _parse_pattern(text, letters)
        if ms is not None:
            return ms
    raise ToolError(_FAILED + f'java.text.ParseException: Unparseable date: "{text}"')


# -- --by-duration: java.time.Duration.parse --------------------------------------------------------

_DURATION = re.compile(r"([-+]?)P(?:([-+]?[0-9]+)D)?"
                       r"(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?(?:([-+]?[0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?",
                       re.IGNORECASE)


def parse_duration(text: str) -> int:
    """`--by-duration` as java.time.Duration.parse reads it (`PnDTnHnMn.nS`, any case, signs on
    the whole and on each part; no years, months or weeks): nanoseconds. ToolError with Java's
    message otherwise."""
    m = _DURATION.fullmatch(text)
    if m is None or (m.group(3) or "").upper() == "T" or all(m.group(i) is None for i in (2, 4, 5, 6)):
        raise ToolError(_FAILED + "Text cannot be parsed to a Duration")
    parts = []
    for group, unit, name in ((2, 86400, "days"), (4, 3600, "hours"), (5, 60, "minutes"), (6, 1, "seconds")):
        number = int(m.group(group) or 0)
        if not _LONG_MIN <= number <= _LONG_MAX or not _LONG_MIN <= number * unit <= _LONG_MAX:
            raise ToolError(_FAILED + f"Text cannot be parsed to a Duration: {name}")
        parts.append(number * unit)
    seconds = 0
    for value in reversed(parts):  # days + (hours + (minutes + seconds)), each sum a Java long
        seconds += value
        if not _LONG_MIN <= seconds <= _LONG_MAX:
            raise ToolError(_FAILED + "Text cannot be parsed to a Duration: overflow")
    nanos = int(((m.group(7) or "") + "000000000")[:9])
    if m.group(6) is not None and m.group(6).startswith("-"):
        nanos = -nanos
    total = seconds * 10**9 + nanos
    if m.group(1) == "-":
        total = -total
    if not _LONG_MIN <= total // 10**9 <= _LONG_MAX:
        raise ToolError(_FAILED + "Text cannot be parsed to a Duration: overflow")
    return total


def timestamp_ago(duration_ns: int) -> int:
    """Kafka's `Instant.now().minus(duration).toEpochMilli()`."""
    then = time.time_ns() - duration_ns
    if not _INSTANT_MIN_S <= then // 10**9 <= _INSTANT_MAX_S:
        raise ToolError(_FAILED + "Instant exceeds minimum or maximum instant")
    ms = then // 10**6
    if not _LONG_MIN <= ms <= _LONG_MAX:
        raise ToolError(_FAILED + "long overflow")
    return ms


# -- the reset plan CSV ----------------------------------------------------------------------------

def _csv_field(value: str) -> str:
    """A string as Jackson's CSV writer (Kafka's CsvUtils) writes it: quoted, quotes doubled, when
    longer than 24 characters or holding a character below '-' (space, comma, quote, ...)."""
    if len(value) > _CSV_MAX_UNQUOTED or any(ord(c) < _CSV_MIN_SAFE for c in value):
        return '"' + value.replace('"', '""') + '"'
    return value


def plan_csv(rows: list[tuple[str, str, int, int]], with_group: bool) -> str:
    """Kafka's --export: one `[group,]topic,partition,offset` line per row."""
    return "".join((_csv_field(g) + "," if with_group else "") + f"{_csv_field(t)},{p},{o}\n"
                   for g, t, p, o in rows)


def _int_field(text: str, bits: int) -> int | None:
    text = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    v = int(text)
    return v if -(1 << (bits - 1)) <= v < (1 << (bits - 1)) else None


def _csv_record(line: str, columns: int) -> tuple[str, ...] | None:
    """One CSV line as `columns` fields (the last two ints: partition, offset), or None."""
    import csv
    try:
        fields = next(csv.reader([line]), [])
    except csv.Error:
        return None
    if len(fields) != columns:
        return None
    partition, offset = _int_field(fields[-2], 32), _int_field(fields[-1], 64)
    if partition is None or offset is None:
        return None
    return (*fields[:-2], partition, offset)  # type: ignore[return-value]


def read_plan(path: str, group: str | None) -> dict[str, dict[tuple[str, int], int]]:
    """A `--from-file` reset plan: {group: {(topic, partition): offset}}. As Kafka: with one
    --group (`group`) and a first line `topic,partition,offset`, every line is of that group;
    otherwise every line is `group,topic,partition,offset`. Lines are split on newlines as Java
    splits them (trailing empty lines dropped; an empty file is one empty, malformed line)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise ToolError(_FAILED + f"java.nio.file.NoSuchFileException: {path}") from None
    except PermissionError:
        raise ToolError(_FAILED + f"java.nio.file.AccessDeniedException: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ToolError(_FAILED + f"java.io.IOException: {getattr(e, 'strerror', None) or e}") from None
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    while lines and lines[-1] == "" and text:
        lines.pop()
    single = group is not None and bool(lines) and _csv_record(lines[0], 3) is not None
    plan: dict[str, dict[tuple[str, int], int]] = {}
    for n, line in enumerate(lines, 1):
        rec = _csv_record(line, 3 if single else 4)
        if rec is None:
            raise ToolError(_FAILED + f"line {n} of {path} is not a reset plan line "
                                      f"({'topic,partition,offset' if single else 'group,topic,partition,offset'}): "
                                      f"{line!r}")
        g = group if single else rec[0]
        topic, partition, offset = rec[-3:]
        plan.setdefault(str(g), {})[(str(topic), int(partition))] = int(offset)
    return plan


# -- the reset -------------------------------------------------------------------------------------

def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Everything of the scenario that can fail before a broker or log dir is opened: the
    --to-datetime timestamp, the --by-duration duration, the --from-file plan."""
    out: dict[str, Any] = {}
    if args.to_datetime is not None:
        out["timestamp"] = parse_datetime(args.to_datetime)
    if args.by_duration is not None:
        out["duration"] = parse_duration(args.by_duration)
    if args.from_file is not None:
        out["plan"] = read_plan(args.from_file, args.group[0] if args.group and len(args.group) == 1 else None)
    return out


def parse_topic_spec(spec: str) -> tuple[str, list[int] | None]:
    """`topic` or `topic:p1,p2` → (topic, [partitions] or None for all of them)."""
    topic, sep, plist = spec.partition(":")
    if not sep:
        return topic, None
    try:
        return topic, [int(x) for x in plist.split(",") if x.strip()]
    except ValueError:
        raise ToolError(f"invalid --topic {spec!r}: expected topic or topic:p1,p2") from None


def _partitions(be: Any, args: argparse.Namespace, committed: dict[tuple[str, int], int]) -> list[tuple[str, int]]:
    """Kafka's scope: --all-topics (the group's committed partitions) wins over --topic; with
    neither (--from-file), none: the plan names its partitions."""
    if args.all_topics:
        return sorted(committed)
    tps: list[tuple[str, int]] = []
    for spec in args.topic or []:
        topic, parts = parse_topic_spec(spec)
        new = [(topic, p) for p in parts] if parts is not None else \
            [(topic, p[0]) for p in be.describe_partitions(topic)]
        tps += [tp for tp in new if tp not in tps]
    return tps


def reset_offsets(be: Any, args: argparse.Namespace, groups: list[str], prepared: dict[str, Any]) -> int:
    """Kafka's --reset-offsets of `groups` (each must be Empty or Dead): the new offsets, committed
    with --execute, printed as the table or (--export) the CSV."""
    scenario = next(dest for dest, _name in SCENARIOS if given(args, dest))  # exactly one (check_args)
    export = args.export
    notes = sys.stderr if export else sys.stdout  # what Kafka prints on stdout besides the result
    result: dict[str, dict[tuple[str, int], int]] = {}
    for g in dict.fromkeys(groups):
        state, _members, committed = be.describe_group(g)
        if state not in ("Empty", "Dead"):
            raise ToolError(f"Assignments can only be reset if the group '{g}' is inactive, but the current state is "
                            f"{state}.")
        tps = _partitions(be, args, committed)
        if scenario == "from_file":
            planned = prepared["plan"].get(g)
            if planned is None:
                notes.write(f"\nError: No reset plan for group {g} found\n")
                result[g] = {}
                continue
            tps = sorted(planned)
        earliest = be.end_offsets(tps, -2)
        latest = be.end_offsets(tps, -1)
        for tp in tps:
            if tp not in latest:
                raise ToolError(f"Topic '{tp[0]}' has no partition {tp[1]}")
        if scenario in ("to_datetime", "by_duration"):
            ts = prepared["timestamp"] if scenario == "to_datetime" else timestamp_ago(prepared["duration"])
            new = _offsets_for_timestamp(be, tps, ts, latest, notes)
        elif scenario in ("to_earliest", "to_latest", "to_current"):
            new = {tp: earliest[tp] if scenario == "to_earliest" else
                   committed[tp] if scenario == "to_current" and tp in committed else latest[tp] for tp in tps}
        else:
            if scenario == "to_offset":
                requested = {tp: args.to_offset for tp in tps}
            elif scenario == "shift_by":
                for tp in tps:
                    if tp not in committed:
                        raise ToolError(f"Cannot shift offset for partition {tp[0]}-{tp[1]} since there is no "
                                        "current committed offset")
                requested = {tp: committed[tp] + args.shift_by for tp in tps}
            else:
                requested = {tp: planned[tp] for tp in tps}
            new = {tp: _clamp(tp, off, earliest[tp], latest[tp]) for tp, off in requested.items()}
        if args.execute and new:
            be.commit_offsets(g, new)
        result[g] = new
    rows = [(g, t, p, o) for g, new in result.items() for (t, p), o in sorted(new.items())]
    if export:
        print(plan_csv(rows, with_group=not (args.group and len(args.group) == 1)))
        return 0
    if result:  # Kafka prints the header for any group reset, even with no partitions
        print("\n" + "\n".join([f"{'GROUP':<30} {'TOPIC':<30} {'PARTITION':<10} {'NEW-OFFSET':<15}"]
                               + [f"{g:<30} {t:<30} {p!s:<10} {o!s:<15}" for g, t, p, o in rows]))
    else:
        print()
    return 0


def _clamp(tp: tuple[str, int], offset: int, lo: int, hi: int) -> int:
    """Kafka's checkOffsetsRange: an offset past the partition's ends is set to that end, with
    its warning (Kafka logs it at WARN, on stderr)."""
    if offset > hi:
        sys.stderr.write(f"New offset ({offset}) is higher than latest offset for topic partition {tp[0]}-{tp[1]}. "
                         f"Value will be set to {hi}\n")
        return hi
    if offset < lo:
        sys.stderr.write(f"New offset ({offset}) is lower than earliest offset for topic partition {tp[0]}-{tp[1]}. "
                         f"Value will be set to {lo}\n")
        return lo
    return offset


def _offsets_for_timestamp(be: Any, tps: list[tuple[str, int]], ts: int, latest: dict[tuple[str, int], int],
                           notes: Any) -> dict[tuple[str, int], int]:
    """ListOffsets by timestamp: the first offset at or after `ts`; where there is none, Kafka's
    warning and the latest offset."""
    found = be.list_offsets(tps, ts) if tps else {}
    out = {}
    for tp in sorted(tps):
        code, offset = found.get(tp, (3, -1))
        if code:
            from ..admin_client import KafkaError
            raise KafkaError(code, where=f" (ListOffsets of {tp[0]}-{tp[1]} for timestamp {ts})")
        if offset == -1:
            notes.write(f"\nWarn: Partition {tp[1]} from topic {tp[0]} is empty. Falling back to latest known "
                        "offset.\n")
            offset = latest[tp]
        out[tp] = offset
    return out
