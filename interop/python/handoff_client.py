#!/usr/bin/env python3
"""A second client of the swift-handoff MQTT protocol, version 1.

This is an independent implementation of docs/PROTOCOL.md, written from that document alone (not from
the Swift sources). It exists to prove that the document is a sufficient contract: a participant built from
it hands state off to Swift participants, claims theirs, and races them for the same handoffs
(Tests/HandoffTests/MQTT/PythonInteropTests.swift). Where it and swift-handoff disagreed, the document was
made precise, and this client follows the document.

Dependencies: the Python standard library and paho-mqtt 1.6 or 2.x (Debian 12: python3-paho-mqtt 1.6.1),
which speaks MQTT 5.

Subcommands (all print or write JSON; `--help` on each for details):

    initiate     hand off one or more states (retained QoS 1 publish, wait for the PUBACK)
    checkpoint   keep checkpoints of a label (§9): Will, birth, checkpoints, then crash (no DISCONNECT)
    race         watch a label and claim every handoff that arrives until N verdicts are seen, chunked ones
                 (§12) read whole by the winner (with --checkpoints also the released checkpoints of crashed
                 participants, §9.3); ranked
                 claims (§5 "Ranked claims") by default: it publishes its birth and waits its rank's turn
                 (--no-rank: every claim at once, no status)
    garbage      publish malformed handoff payloads, with the dead-letter reason each should get
    garbage-checkpoints  publish unreadable checkpoints (with this reader's reason for each), then release them
    dead-letters read the dead letters of a label and their reason user properties
    dump         print every retained message under a prefix, for debugging
    corpus       envelope edge cases with this reader's verdict on each (no broker)
    attack       forge an envelope, clear waiting handoffs (bare, or naming a made-up claimer), replace one (§10.7)
    signing-vectors  write the §10 test vectors (interop/python/signing-vectors.json; no broker)
    verify-vectors   check this client against a §10 vectors file (no broker)

§10 (signed and encrypted handoffs): `--keys FILE` on the participant commands makes the participant keyed (it
signs what it writes and every claim, and verifies what it reads); `--encrypt` also encrypts the data it writes.
A key file has one key per line, `KEYID BASE64SECRET`; the first key writes, the others only read. Without
--keys nothing changes, except the repair of §10.6 (a bare clear of a waiting handoff is restored), which applies
to every participant. Keyed participants need python3-cryptography (imported only then).

Section numbers (§) refer to docs/PROTOCOL.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError:  # pragma: no cover - depends on the machine
    print(
        "error: the Python MQTT client is missing: apt-get install python3-paho-mqtt (or pip install 'paho-mqtt<3')",
        file=sys.stderr,
    )
    sys.exit(3)

# ---------------------------------------------------------------------------------------------------------------
# Constants of the protocol

FORMAT = "swift-handoff/1"  # §4
STATUS_FORMAT = "swift-handoff-instance/1"  # §9.1
MAX_HEADER_BYTES = 65_536  # §4
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024  # §7, swift-handoff's default size limit
ENVELOPE_CONTENT_TYPE = "application/vnd.swift-handoff"  # §4, informative
CHUNKS_CONTENT_TYPE = "application/vnd.swift-handoff.chunks+json"  # §12: the contentType of a chunk manifest
CHUNKS_FORMAT = "swift-handoff-chunks/1"  # §12.1
MAX_LABEL_BYTES = 200  # §3
MAX_PREFIX_BYTES = 256  # §3
MAX_DETAIL_BYTES = 1024  # §7: bytes of UTF-8, cut at a scalar boundary

CLAIM_BY = "handoff-claim-by"  # §5
CLAIM_PURPOSE = "handoff-claim-purpose"
PURPOSE_MERGE = "merge"
PURPOSE_DEAD_LETTER = "dead-letter"
PURPOSE_ALREADY_MERGED = "already-merged"


# §5 "Ranked claims": rank r (0: first) waits min(r, RANK_MAX_STEPS) x RANK_STEP before its merge claim.
RANK_STEP = 0.003  # seconds
RANK_MAX_STEPS = 8


def rendezvous_score(round_id: str, instance: str) -> bytes:
    """§5 "Ranked claims": SHA-256 of the UTF-8 bytes of the round's envelope id, one 0x00 byte, and the UTF-8 bytes
    of the instance id. Higher scores (compared byte by byte, as unsigned big-endian numbers) rank first."""
    return hashlib.sha256(round_id.encode("utf-8") + b"\x00" + instance.encode("utf-8")).digest()


def claim_rank(round_id: str, own: str, candidates: set[str], origin: Optional[str]) -> int:
    """§5 "Ranked claims": how many of `candidates` (the other instances online) rank above `own` for `round_id`;
    the envelope's `origin` (who never claims its own handoff) is left out. Equal scores: the lower instance id (as
    UTF-8 bytes) first."""
    mine = (rendezvous_score(round_id, own), own.encode("utf-8"))
    rank = 0
    for other in candidates:
        if other == own or other == origin:
            continue
        score = rendezvous_score(round_id, other)
        if score > mine[0] or (score == mine[0] and other.encode("utf-8") < mine[1]):
            rank += 1
    return rank


def is_merge_purpose(purpose: Optional[str]) -> bool:
    """§5: only `dead-letter` and `already-merged` claims are not merged; absent, `merge` and unknown purposes
    are merge claims (so that the winner merges: nothing vanishes)."""
    return purpose not in (PURPOSE_DEAD_LETTER, PURPOSE_ALREADY_MERGED)

DEAD_REASON = "handoff-dead-reason"  # §7
DEAD_DETAIL = "handoff-dead-detail"
DEAD_BY = "handoff-dead-by"
DEAD_AT = "handoff-dead-at"
DEAD_TOPIC = "handoff-dead-topic"

REASONS = frozenset(
    {
        "malformed",
        "truncated",
        "unsupported-format",
        "integrity-failure",
        "too-large",
        "label-mismatch",
        "unknown-version",
        "undecodable-state",
        "migration-failed",
        "validation-failed",
        "merge-failed",
        "claim-outcome-unknown",
        "signature-invalid",  # §10.4, keyed readers
        "decryption-failed",
        "unknown-key",
        "chunk-missing",  # §12.2
    }
)
# Reasons for which the handoff is left in place instead of dead-lettered (§7, §10.4).
LEFT_IN_PLACE = frozenset({"unsupported-format", "unknown-version", "unknown-key"})

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


# ---------------------------------------------------------------------------------------------------------------
# Labels, ids, prefixes and topics (§1, §3)


def label_violation(label: str) -> Optional[str]:
    """Why `label` is not a valid label, or None."""
    try:
        size = len(label.encode("utf-8"))
    except UnicodeEncodeError:
        return "a label must be valid Unicode (no lone surrogates)"
    if size == 0:
        return "a label must not be empty"
    if size > MAX_LABEL_BYTES:
        return f"a label must be at most {MAX_LABEL_BYTES} UTF-8 bytes, this one has {size}"
    for char in label:
        code = ord(char)
        if code <= 0x1F or 0x7F <= code <= 0x9F:
            return f"a label must not contain control characters, found U+{code:04X}"
    return None


def encode_label(label: str) -> str:
    """The label as one topic level: every UTF-8 byte outside A-Z a-z 0-9 - . _ ~ becomes %XX (upper case)."""
    violation = label_violation(label)
    if violation:
        raise ValueError(violation)
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in label.encode("utf-8"))


def decode_label(level: str) -> str:
    """The label whose canonical encoding is `level`; ValueError for anything else."""
    raw = bytearray()
    index = 0
    data = level.encode("utf-8")
    while index < len(data):
        byte = data[index]
        if byte in _UNRESERVED:
            raw.append(byte)
            index += 1
            continue
        digits = data[index + 1 : index + 3].decode("ascii", "replace")
        if byte != ord("%") or not re.fullmatch(r"[0-9A-F]{2}", digits):
            raise ValueError(f"not a canonical label encoding: {level!r}")
        value = int(digits, 16)
        if value in _UNRESERVED:
            raise ValueError(f"not a canonical label encoding (escapes an unreserved byte): {level!r}")
        raw.append(value)
        index += 3
    label = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
    violation = label_violation(label)
    if violation:
        raise ValueError(violation)
    return label


def is_valid_id(value: Any) -> bool:
    """Whether `value` is a valid handoff id or instance id: 1-64 characters of [A-Za-z0-9_-]."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def new_id() -> str:
    """A fresh handoff or instance id (a random lowercase UUID, like swift-handoff)."""
    return str(uuid.uuid4())


def validate_prefix(prefix: str) -> None:
    """Raises ValueError unless `prefix` is a valid topic prefix (§3)."""
    if not prefix or len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        raise ValueError("a prefix must be 1-256 bytes")
    if prefix.startswith("$") or any(c in prefix for c in "+#\0"):
        raise ValueError("a prefix must not start with '$' or contain '+', '#' or NUL")
    if any(level == "" for level in prefix.split("/")):
        raise ValueError("a prefix's topic levels must not be empty")


@dataclass(frozen=True)
class Topics:
    """The topics of one prefix (§3)."""

    prefix: str

    def handoff(self, label: str, handoff_id: str) -> str:
        return f"{self.prefix}/handoffs/{encode_label(label)}/{handoff_id}"

    def handoff_filter(self, label: str) -> str:
        return f"{self.prefix}/handoffs/{encode_label(label)}/+"

    def dead_letter(self, label_level: str, handoff_id: str) -> str:
        """Dead-letter topic for an already encoded label level (taken from a handoff topic)."""
        return f"{self.prefix}/dead-letters/{label_level}/{handoff_id}"

    def dead_letter_filter(self, label: str) -> str:
        return f"{self.prefix}/dead-letters/{encode_label(label)}/+"

    def sync(self, instance: str) -> str:
        return f"{self.prefix}/sync/{instance}"

    def chunk_filter(self, label_level: str, handoff_id: str) -> str:
        """§12: the chunk topics of one handoff, for an already encoded label level."""
        return f"{self.prefix}/chunks/{label_level}/{handoff_id}/+"

    def checkpoint(self, label: str, instance: str) -> str:
        """§9.2: the latest checkpoint of `label` by `instance`."""
        return f"{self.prefix}/checkpoints/{encode_label(label)}/{instance}"

    def checkpoint_filter(self, label: str) -> str:
        return f"{self.prefix}/checkpoints/{encode_label(label)}/+"

    def status(self, instance: str) -> str:
        """§9.1: the instance's status (birth, Will, death notice)."""
        return f"{self.prefix}/instances/{instance}"

    def status_filter(self) -> str:
        return f"{self.prefix}/instances/+"

    def status_instance(self, topic: str) -> Optional[str]:
        """The `{instance}` level of a status topic under this prefix, or None for any other topic."""
        start = f"{self.prefix}/instances/"
        if not topic.startswith(start) or "/" in topic[len(start) :]:
            return None
        return topic[len(start) :]

    def split(self, topic: str) -> tuple[str, str, str]:
        """(kind, label level, id) of a topic under this prefix, e.g. ('handoffs', 'a%2Fb', '0f8f...')."""
        rest = topic[len(self.prefix) + 1 :] if topic.startswith(self.prefix + "/") else ""
        parts = rest.split("/")
        if len(parts) != 3:
            raise ValueError(f"not a handoff or dead-letter topic: {topic!r}")
        return parts[0], parts[1], parts[2]


# ---------------------------------------------------------------------------------------------------------------
# Time (RFC 3339, UTC, exactly three fractional digits)


def rfc3339_ms(moment: Optional[datetime] = None) -> str:
    """`moment` (default: now) as e.g. 2026-11-25T06:00:00.123Z."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------------------------------------------
# The envelope (§4)


class Rejection(Exception):
    """A handoff this reader cannot accept, with its §7 reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = truncate_detail(detail)

    @property
    def left_in_place(self) -> bool:
        return self.reason in LEFT_IN_PLACE


@dataclass
class Envelope:
    """One handoff: the header's fields and the data bytes."""

    id: str
    label: str
    vsn: int
    created_at: str
    origin: dict[str, Any]
    content_type: str
    data: bytes
    incarnation: Optional[int] = None  # §9.2: only on a checkpoint
    mac: Optional[str] = None  # §10.2: the `signature.mac` (lower case) of a keyed envelope, as written or read
    stored_sha256: Optional[str] = None  # §10.3: the header's `sha256` where `data` is the decrypted plaintext

    @property
    def sha256(self) -> str:
        """The header's `sha256`: of the data as stored (for an encrypted envelope, of the ciphertext)."""
        return self.stored_sha256 or hashlib.sha256(self.data).hexdigest()

    def header(self) -> dict[str, Any]:
        """The header of the envelope as an unkeyed writer writes it (§4)."""
        header: dict[str, Any] = {
            "contentType": self.content_type,
            "createdAt": self.created_at,
            "format": FORMAT,
            "id": self.id,
            "label": self.label,
            "length": len(self.data),
            "origin": self.origin,
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "vsn": self.vsn,
        }
        if self.incarnation is not None:
            header["incarnation"] = self.incarnation
        return header

    def encode(self) -> bytes:
        """header + "\\n" + data; the header is compact JSON with sorted keys (no raw newline)."""
        header = encode_header(self.header())
        if len(header) > MAX_HEADER_BYTES:
            raise ValueError(f"the header is {len(header)} bytes, more than {MAX_HEADER_BYTES}")
        return header + b"\n" + self.data


def encode_header(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class JSONNumber:
    """A JSON number kept as its text (json.loads' parse_int/parse_float hook): §4 integers are read exactly
    from the digits, never through a float."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _JSONObject(dict):
    """A JSON object as read, with the keys that occur more than once in it (json.loads' object_pairs_hook)."""

    repeated: list[str]


def _object(pairs: list[tuple[str, Any]]) -> "_JSONObject":
    result = _JSONObject(pairs)
    seen: set[str] = set()
    result.repeated = [key for key, _ in pairs if key in seen or seen.add(key)]  # type: ignore[func-returns-value]
    return result


MAX_HEADER_DEPTH = 64  # §4: objects and arrays nest at most 64 levels, the header object being level 1
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    """Whether a string read from JSON has an unpaired surrogate escape (paired ones are combined by json)."""
    return _SURROGATE_RE.search(text) is not None


def _depth_and_violation(value: Any) -> tuple[int, Optional[str]]:
    """The nesting depth of a parsed JSON value, and the first repeated key or unpaired surrogate in it."""
    depth, violation = 0, None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            depth = max(depth, level)
            if violation is None and getattr(item, "repeated", None):
                violation = f"repeated key {item.repeated[0]!r} in the header"
            for key, child in item.items():
                if violation is None and _has_surrogate(key):
                    violation = "a string in the header is not valid Unicode (unpaired surrogate escape)"
                stack.append((child, level + 1))
        elif isinstance(item, list):
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in item)
        elif isinstance(item, str):
            if violation is None and _has_surrogate(item):
                violation = "a string in the header is not valid Unicode (unpaired surrogate escape)"
    return depth, violation


def _parse_header(raw: bytes) -> dict[str, Any]:
    """Checks 3 and 4 of §4 "Reading an envelope": the header as a JSON object (UTF-8, a leading BOM ignored,
    numbers kept as text, nesting at most 64 levels) → else malformed; a single `format` naming another format
    → unsupported-format whatever else is wrong; a repeated key at any depth or an unpaired surrogate escape
    → malformed; `format` absent or not a string → malformed."""
    try:
        text = raw.decode("utf-8-sig")
        header = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_object, parse_int=JSONNumber, parse_float=JSONNumber
        )
    except (ValueError, RecursionError) as error:  # ValueError includes UnicodeDecodeError and JSONDecodeError
        raise Rejection("malformed", f"the header is not UTF-8 JSON: {error}"[:200]) from None
    if not isinstance(header, dict):
        raise Rejection("malformed", "the header is not a JSON object")
    depth, violation = _depth_and_violation(header)
    if depth > MAX_HEADER_DEPTH:
        raise Rejection("malformed", f"the header nests deeper than {MAX_HEADER_DEPTH} levels")
    fmt = header.get("format")
    if (
        isinstance(fmt, str) and "format" not in header.repeated
        and not _has_surrogate(fmt) and fmt != FORMAT
    ):
        raise Rejection("unsupported-format", f"format {fmt!r} is not {FORMAT!r}")
    if violation is not None:
        raise Rejection("malformed", violation)
    if not isinstance(fmt, str):
        raise Rejection("malformed", "the header has no string 'format'")
    return header


INT64_MAX = 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_NUMBER_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?)([0-9]+))?")


def exact_integer(text: str) -> Optional[int]:
    """The value of a JSON number's text if it is integral and within 64 bits, else None: exact decimal
    arithmetic on the digits (1, 1.0, 1e0, 10E-1 and -0 are integers; 1.00000000000000000001 is not; a huge
    exponent costs nothing)."""
    match = _NUMBER_RE.fullmatch(text)
    if not match:
        return None
    sign, whole, fraction, exponent_sign, exponent_digits = match.groups()
    fraction = fraction or ""
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return 0  # 0, -0, 0.0, 0e999999999
    significant = digits.rstrip("0")
    exponent_digits = (exponent_digits or "0").lstrip("0") or "0"
    # Saturated: a header has at most 65,536 digits, so beyond 10^9 only the exponent's sign matters.
    exponent = int(exponent_digits) if len(exponent_digits) <= 9 else 10**9
    if exponent_sign == "-":
        exponent = -exponent
    scale = exponent - len(fraction) + (len(digits) - len(significant))
    if scale < 0:
        return None  # a fraction
    if len(significant) + scale > 19:
        return None  # at least 10^19, beyond 64 bits
    value = int(significant) * 10**scale
    return -value if sign == "-" else value


def _integer(value: Any, low: int, high: int) -> Optional[int]:
    """A JSON number with an integral value in [low, high] (1, 1.0 and 1e0 alike), or None."""
    if not isinstance(value, JSONNumber):
        return None
    number = exact_integer(value.text)
    return number if number is not None and low <= number <= high else None


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def same_media_type(lhs: str, rhs: str) -> bool:
    """§7: two content types are the same media type if their type/subtype (before any ';', without spaces and
    tabs around it) are equal ignoring ASCII case; parameters are ignored."""

    def essence(value: str) -> str:
        base = value.split(";", 1)[0].strip(" \t")
        return base.translate(_ASCII_LOWER)

    return essence(lhs) == essence(rhs)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def truncate_detail(detail: str) -> str:
    """§7: a dead letter's detail is at most 1,024 bytes of UTF-8, cut at a Unicode scalar boundary."""
    encoded = detail.encode("utf-8", "replace")
    if len(encoded) <= MAX_DETAIL_BYTES:
        return detail if encoded.decode("utf-8") == detail else encoded.decode("utf-8")
    return encoded[:MAX_DETAIL_BYTES].decode("utf-8", "ignore")


_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))"
)


def is_rfc3339(text: str) -> bool:
    """Whether `text` is an RFC 3339 date-time (any fraction, Z or an offset, T/Z in either case)."""
    match = _RFC3339_RE.fullmatch(text)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 60:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    if not 1 <= day <= days:
        return False
    return match.group(9) is None or (int(match.group(9)) <= 23 and int(match.group(10)) <= 59)


def _check_header_fields(header: dict[str, Any]) -> None:
    """The §4 header keys (null counts as absent); Rejection('malformed') on the first wrong one."""
    checks: list[tuple[str, Callable[[Any], bool], str]] = [
        ("id", is_valid_id, "1-64 characters of [A-Za-z0-9_-]"),
        ("label", lambda v: _is_string(v) and label_violation(v) is None, "a valid label"),
        ("vsn", lambda v: _integer(v, 0, INT64_MAX) is not None, "an integer 0...2^63-1"),
        ("createdAt", lambda v: _is_string(v) and is_rfc3339(v), "an RFC 3339 date-time"),
        ("origin", _is_origin, "an object with a string instance"),
        ("contentType", _is_string, "a string"),
        ("length", lambda v: _integer(v, 0, INT64_MAX) is not None, "an integer 0...2^63-1"),
        ("sha256", lambda v: _is_string(v) and re.fullmatch(r"[0-9a-fA-F]{64}", v) is not None, "64 hex digits"),
    ]
    for key, valid, expected in checks:
        if header.get(key) is None:
            raise Rejection("malformed", f"the header has no '{key}'")
        if not valid(header[key]):
            raise Rejection("malformed", f"header '{key}' must be {expected}, found {header[key]!r}"[:200])


def _plain_origin(origin: dict[str, Any]) -> dict[str, Any]:
    """The origin with its pid as an int (and without null members)."""
    plain = {key: value for key, value in origin.items() if key in ("instance", "host", "pid") and value is not None}
    if "pid" in plain:
        plain["pid"] = exact_integer(plain["pid"].text)
    return plain


def _is_origin(value: Any) -> bool:
    if not isinstance(value, dict) or not _is_string(value.get("instance")):
        return False
    if value.get("host") is not None and not _is_string(value["host"]):
        return False
    return value.get("pid") is None or _integer(value["pid"], INT32_MIN, INT32_MAX) is not None


def decode_envelope(
    payload: bytes,
    topic_label: str,
    topic_id: str,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    checkpoint: bool = False,
    keys: Optional[KeySet] = None,
) -> Envelope:
    """The envelope in `payload`, read from the topic of (`topic_label`, `topic_id`).

    Raises Rejection with the §7 reason of the first failing check, in the order §4 prescribes:
    size, header line, JSON object, format, header keys, data length, SHA-256, topic.

    `incarnation`, where present, must be an integer >= 1 on any envelope (check 5, else malformed; its value
    means nothing on a handoff). With `checkpoint`, the payload comes from a checkpoint topic (§9.2), whose last
    level `topic_id` is the writer's instance: check 8 then compares the header's `label` and `origin.instance`
    with the topic's and requires an `incarnation` (else label-mismatch: not a checkpoint of that topic); the
    checkpoint's `id` is new for each write and matches no topic level.

    With `keys` (a keyed reader, §10.4), checks 9 (signature) and 10 (encryption) follow; the envelope's `data` is
    then the decrypted state of an encrypted envelope. Without, an envelope with `encryption` is `unknown-key`.
    """
    if len(payload) > max_payload:
        raise Rejection("too-large", f"{len(payload)} bytes, over this reader's limit of {max_payload}")
    newline = payload.find(b"\n", 0, MAX_HEADER_BYTES + 1)
    if newline < 0:
        raise Rejection("malformed", f"no header line (newline) within the first {MAX_HEADER_BYTES + 1} bytes")
    header = _parse_header(payload[:newline])
    _check_header_fields(header)
    incarnation: Optional[int] = None
    if header.get("incarnation") is not None:
        incarnation = _integer(header["incarnation"], 1, INT64_MAX)
        if incarnation is None:
            raise Rejection("malformed", f"header 'incarnation' must be an integer 1...2^63-1, found {header['incarnation']!r}"[:200])
    length = exact_integer(header["length"].text)
    assert length is not None
    data = payload[newline + 1 :]
    if len(data) < length:
        raise Rejection("truncated", f"{len(data)} data bytes, the header says {length}")
    if len(data) > length:
        raise Rejection("malformed", f"{len(data)} data bytes, more than the header's {length}")
    if hashlib.sha256(data).hexdigest() != header["sha256"].lower():
        raise Rejection("integrity-failure", "the SHA-256 of the data does not match the header")
    if checkpoint and (header["origin"]["instance"] != topic_id or header["label"] != topic_label):
        raise Rejection(
            "label-mismatch",
            f"header label/origin.instance {header['label']!r}/{header['origin']['instance']!r} differ from the "
            f"checkpoint topic's {topic_label!r}/{topic_id!r}",
        )
    if checkpoint and incarnation is None:
        raise Rejection("label-mismatch", "an envelope without an 'incarnation' on a checkpoint topic: not a checkpoint")
    if not checkpoint and (header["id"] != topic_id or header["label"] != topic_label):
        raise Rejection(
            "label-mismatch",
            f"header label/id {header['label']!r}/{header['id']!r} differ from the topic's {topic_label!r}/{topic_id!r}",
        )
    plaintext, mac = _keyed_checks(header, data, keys)
    return Envelope(
        id=header["id"],
        label=header["label"],
        vsn=exact_integer(header["vsn"].text) or 0,
        created_at=header["createdAt"],
        origin=_plain_origin(header["origin"]),
        content_type=header["contentType"],
        data=plaintext,
        incarnation=incarnation if checkpoint else None,
        mac=mac or None,
        stored_sha256=header["sha256"].translate(_ASCII_LOWER) if plaintext is not data else None,
    )


def decode_json_state(envelope: Envelope, readable_versions: set[int]) -> Any:
    """The state of a JSON envelope that this reader can read; Rejection otherwise (§7)."""
    if envelope.vsn not in readable_versions:
        raise Rejection("unknown-version", f"version {envelope.vsn} is not one of {sorted(readable_versions)}")
    if not same_media_type(envelope.content_type, "application/json"):
        raise Rejection("undecodable-state", f"content type {envelope.content_type!r} is not JSON")
    try:
        return json.loads(envelope.data.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError as error:
        raise Rejection("undecodable-state", f"the data is not JSON: {error}") from None


# ---------------------------------------------------------------------------------------------------------------
# Chunked handoffs (§12)


def is_chunk_manifest(envelope: Envelope) -> bool:
    return same_media_type(envelope.content_type, CHUNKS_CONTENT_TYPE)


@dataclass
class ChunkManifest:
    """§12.1: the data of a manifest M."""

    chunk_size: int
    chunks: list[str]  # the SHA-256 of each chunk, lower case
    header: str  # the header line of the envelope E the chunks make
    length: int

    def chunk_length(self, index: int) -> int:
        return self.chunk_size if index < len(self.chunks) - 1 else self.length - self.chunk_size * (len(self.chunks) - 1)


def read_manifest(data: bytes) -> ChunkManifest:
    """§12.2, before claiming: M's data, or Rejection (`malformed`, or `unsupported-format`, left in place)."""
    try:
        fields = json.loads(data.decode("utf-8"), parse_constant=_reject_constant, parse_int=JSONNumber, parse_float=JSONNumber)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        raise Rejection("malformed", "chunk manifest: its data is not a JSON object")
    if not _is_string(fields.get("format")):
        raise Rejection("malformed", "chunk manifest: no 'format' string")
    if fields["format"] != CHUNKS_FORMAT:
        raise Rejection("unsupported-format", f"chunk manifest of format {fields['format']!r}; this reader reads {CHUNKS_FORMAT!r}")
    chunk_size, length = _integer(fields.get("chunkSize"), 1, INT64_MAX), _integer(fields.get("length"), 1, INT64_MAX)
    if chunk_size is None or length is None:
        raise Rejection("malformed", "chunk manifest: 'chunkSize' and 'length' must be integers >= 1")
    chunks, header = fields.get("chunks"), fields.get("header")
    expected = (length - 1) // chunk_size + 1
    if not isinstance(chunks, list) or len(chunks) != expected or not all(
        _is_string(chunk) and _HEX64_RE.fullmatch(chunk) for chunk in chunks
    ):
        raise Rejection("malformed", f"chunk manifest: 'chunks' must be {expected} SHA-256 digests (64 hex digits)")
    if not _is_string(header) or len(header.encode("utf-8")) > MAX_HEADER_BYTES or "\n" in header:
        raise Rejection("malformed", f"chunk manifest: 'header' must be a string of at most {MAX_HEADER_BYTES} bytes without a line feed")
    return ChunkManifest(chunk_size=chunk_size, chunks=[chunk.lower() for chunk in chunks], header=header, length=length)


def assemble_chunks(
    manifest_envelope: Envelope, manifest: ChunkManifest, chunks: dict[str, bytes], label: str, handoff_id: str,
    keys: Optional["KeySet"], max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> Envelope:
    """§12.2 steps 1, 3 and 4 for the winner of M: E from the retained chunks (by topic), or Rejection."""
    if manifest.length > max_payload:
        raise Rejection("too-large", f"the chunks hold {manifest.length} bytes, over this reader's limit of {max_payload}")
    by_index: dict[int, bytes] = {}
    for topic, payload in chunks.items():
        level = topic.rsplit("/", 1)[-1]
        if not payload or not level.isdigit() or str(int(level)) != level or int(level) >= len(manifest.chunks):
            continue  # not a chunk of this manifest
        by_index[int(level)] = payload
    for index, payload in sorted(by_index.items()):
        if len(payload) != manifest.chunk_length(index):
            raise Rejection("integrity-failure", f"chunk {index} has {len(payload)} bytes, the manifest says {manifest.chunk_length(index)}")
        if hashlib.sha256(payload).hexdigest() != manifest.chunks[index]:
            raise Rejection("integrity-failure", f"the SHA-256 of chunk {index} is not the manifest's")
    missing = [index for index in range(len(manifest.chunks)) if index not in by_index]
    if missing:
        raise Rejection("chunk-missing", f"{len(missing)} of the {len(manifest.chunks)} chunks are not on the broker (chunk {missing[0]})")
    payload = manifest.header.encode("utf-8") + b"\n" + b"".join(by_index[index] for index in range(len(manifest.chunks)))
    whole = decode_envelope(payload, label, handoff_id, max_payload=len(payload), keys=keys)
    if (
        is_chunk_manifest(whole) or whole.vsn != manifest_envelope.vsn or whole.created_at != manifest_envelope.created_at
        or whole.origin != manifest_envelope.origin
    ):
        raise Rejection("malformed", "the envelope the chunks make disagrees with its manifest (vsn, createdAt or origin), or is a manifest")
    return whole


# ---------------------------------------------------------------------------------------------------------------
# Keys, signatures and encryption (§10)

SIGNATURE_ALG = "hmac-sha256"  # §10.2
ENCRYPTION_ALG = "aes-256-gcm"  # §10.3
HKDF_SALT = b"swift-handoff/1"  # §10.1: the 15 UTF-8 bytes
HKDF_INFO_MAC = b"swift-handoff signature"
HKDF_INFO_AES = b"swift-handoff encryption"
SIGNED_TEXT_START = b"swift-handoff-signature/1\n"  # §10.2
CLAIM_TEXT_START = b"swift-handoff-claim/1\n"  # §10.5
CLAIM_SIGNATURE = "handoff-claim-signature"  # §10.5
RESTORE_BY = "handoff-restore-by"  # §10.6
MIN_SECRET_BYTES = 32
_KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
_NONCE_RE = re.compile(r"[0-9a-fA-F]{24}")


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256: extract (PRK = HMAC(salt, IKM)), then expand to `length` bytes."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    output, block, counter = b"", b"", 1
    while len(output) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        output += block
        counter += 1
    return output[:length]


def is_key_id(value: Any) -> bool:
    """§10.1: a key id is 1-64 characters of [A-Za-z0-9._-]."""
    return isinstance(value, str) and _KEY_ID_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class Key:
    """A key of §10.1: its id, its secret and the two subkeys derived from it."""

    id: str
    secret: bytes

    def __post_init__(self) -> None:
        if not is_key_id(self.id):
            raise ValueError(f"invalid key id {self.id!r}: 1-64 characters of [A-Za-z0-9._-]")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the secret of key {self.id!r} has {len(self.secret)} bytes, fewer than {MIN_SECRET_BYTES}")

    @property
    def mac_key(self) -> bytes:
        return hkdf_sha256(self.secret, HKDF_SALT, HKDF_INFO_MAC)

    @property
    def aes_key(self) -> bytes:
        return hkdf_sha256(self.secret, HKDF_SALT, HKDF_INFO_AES)


class KeySet:
    """One writing key and any number of read-only keys (§10.1)."""

    def __init__(self, keys: list[Key]) -> None:
        if not keys:
            raise ValueError("a key set needs at least one key (the first one writes)")
        self.writer = keys[0]
        self._keys: dict[str, Key] = {}
        for key in keys:
            if key.id in self._keys:
                raise ValueError(f"key id {key.id!r} occurs twice")
            self._keys[key.id] = key
        self._mac_keys = {key.id: key.mac_key for key in keys}
        self._aes_keys = {key.id: key.aes_key for key in keys}

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def mac_key(self, key_id: str) -> bytes:
        return self._mac_keys[key_id]

    def aes_key(self, key_id: str) -> bytes:
        return self._aes_keys[key_id]

    # -- claims (§10.5) --

    def claim_signature(self, topic: str, claim_by: str, purpose: Optional[str], round_mac: str) -> str:
        """The `handoff-claim-signature` value of a claim, signed with the writing key."""
        key = self.writer
        cmac = hmac.new(self.mac_key(key.id), claim_text(topic, claim_by, purpose, round_mac), hashlib.sha256).hexdigest()
        return f"{SIGNATURE_ALG}:{key.id}:{cmac}"

    def claim_verifies(self, signature: Optional[str], topic: str, claim_by: str, purpose: Optional[str], round_mac: str) -> bool:
        """Whether a claim's `handoff-claim-signature` is `hmac-sha256:KEYID:CMAC` with KEYID in this set and CMAC
        right (compared case-insensitively, in constant time)."""
        if signature is None:
            return False
        parts = signature.split(":")
        if len(parts) != 3 or parts[0] != SIGNATURE_ALG or parts[1] not in self:
            return False
        expected = hmac.new(self.mac_key(parts[1]), claim_text(topic, claim_by, purpose, round_mac), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode("ascii"), parts[2].translate(_ASCII_LOWER).encode("utf-8"))


def parse_key_file(text: str, source: str = "the key file") -> KeySet:
    """The key set of a key file: UTF-8 text, one key per line `KEYID BASE64SECRET` (separated by spaces or tabs;
    standard base64 with padding), blank lines and lines whose first non-blank character is `#` ignored; the first key
    writes, the others only read. ValueError (naming the line) for anything else."""
    keys: list[Key] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip(" \t\r")
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if len(fields) != 2:
            raise ValueError(f"{source}, line {number}: expected `KEYID BASE64SECRET`, found {len(fields)} fields")
        key_id, encoded = fields
        if not is_key_id(key_id):
            raise ValueError(f"{source}, line {number}: invalid key id {key_id!r} (1-64 characters of [A-Za-z0-9._-])")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{source}, line {number}: the secret of key {key_id!r} is not base64") from None
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"{source}, line {number}: the secret of key {key_id!r} has {len(secret)} bytes, at least {MIN_SECRET_BYTES} needed"
            )
        if any(key.id == key_id for key in keys):
            raise ValueError(f"{source}, line {number}: key id {key_id!r} occurs twice")
        keys.append(Key(key_id, secret))
    if not keys:
        raise ValueError(f"{source} holds no key")
    return KeySet(keys)


def load_key_file(path: str) -> KeySet:
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as error:
        raise ValueError(f"cannot read the key file {path}: {error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"the key file {path} is not UTF-8") from None
    return parse_key_file(text, f"key file {path}")


def _aesgcm() -> Any:
    """cryptography's AESGCM and InvalidTag, imported only where a key set is used."""
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:  # pragma: no cover - depends on the machine
        raise SystemExit("error: keyed participants need python3-cryptography (apt-get install python3-cryptography)") from None
    return AESGCM, InvalidTag


def _length_prefixed(values: list[str]) -> bytes:
    out = bytearray()
    for value in values:
        encoded = value.encode("utf-8")
        out += str(len(encoded)).encode("ascii") + b":" + encoded + b"\n"
    return bytes(out)


def _text_value(value: Any) -> str:
    """A header value as a line of the signed text: strings as they are, integers in plain decimal, absent (or null)
    as the empty string. (Values of another type, possible only in `encryption`, whose check 10 comes after the
    signature, also give the empty string.)"""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, JSONNumber):
        number = exact_integer(value.text)
        return "" if number is None else str(number)
    if isinstance(value, int):
        return str(value)
    return ""


def _member(header: dict[str, Any], key: str, member: str) -> Any:
    value = header.get(key)
    return value.get(member) if isinstance(value, dict) else None


def signed_text(header: dict[str, Any]) -> bytes:
    """§10.2: the text the envelope's `signature.mac` is the HMAC of, from a header as written or as read."""
    values = [
        header.get("format"),
        header.get("id"),
        header.get("label"),
        header.get("vsn"),
        header.get("createdAt"),
        _member(header, "origin", "instance"),
        _member(header, "origin", "host"),
        _member(header, "origin", "pid"),
        header.get("contentType"),
        header.get("length"),
        _text_value(header.get("sha256")).translate(_ASCII_LOWER),
        header.get("incarnation"),
        _member(header, "encryption", "alg"),
        _member(header, "encryption", "key"),
        _text_value(_member(header, "encryption", "nonce")).translate(_ASCII_LOWER),
        _member(header, "signature", "alg"),
        _member(header, "signature", "key"),
    ]
    return SIGNED_TEXT_START + _length_prefixed([_text_value(value) for value in values])


def claim_text(topic: str, claim_by: str, purpose: Optional[str], round_mac: str) -> bytes:
    """§10.5: the text a claim's CMAC is the HMAC of."""
    return CLAIM_TEXT_START + _length_prefixed([topic, claim_by, purpose or "", round_mac.translate(_ASCII_LOWER)])


def seal(envelope: "Envelope", keys: KeySet, encrypt: bool = False, nonce: Optional[bytes] = None) -> tuple[bytes, str]:
    """The payload of a keyed writer (§10.2, §10.3) and its `signature.mac`: the data encrypted (if `encrypt`) under
    the writing key with `nonce` (default: 12 random bytes), the header signed with the writing key."""
    key = keys.writer
    header = envelope.header()
    data = envelope.data
    if encrypt:
        aesgcm, _ = _aesgcm()
        nonce = nonce if nonce is not None else os.urandom(12)
        if len(nonce) != 12:
            raise ValueError("an AES-GCM nonce has 12 bytes")
        data = aesgcm(keys.aes_key(key.id)).encrypt(nonce, envelope.data, None)
        header["length"] = len(data)
        header["sha256"] = hashlib.sha256(data).hexdigest()
        header["encryption"] = {"alg": ENCRYPTION_ALG, "key": key.id, "nonce": nonce.hex()}
    header["signature"] = {"alg": SIGNATURE_ALG, "key": key.id}
    mac = hmac.new(keys.mac_key(key.id), signed_text(header), hashlib.sha256).hexdigest()
    header["signature"]["mac"] = mac
    encoded = encode_header(header)
    if len(encoded) > MAX_HEADER_BYTES:
        raise ValueError(f"the header is {len(encoded)} bytes, more than {MAX_HEADER_BYTES}")
    return encoded + b"\n" + data, mac


def _keyed_checks(header: dict[str, Any], data: bytes, keys: Optional[KeySet]) -> tuple[bytes, str]:
    """Checks 9 and 10 of §10.4 (or, without a key set, the `encryption` case of check 10); the data to decode (the
    plaintext of an encrypted envelope) and the envelope's `signature.mac` in lower case ("" without a key set)."""
    if keys is None:
        if header.get("encryption") is not None:
            raise Rejection("unknown-key", "an encrypted envelope, and this reader has no key set")
        return data, ""
    signature = header.get("signature")
    if not isinstance(signature, dict) or not all(isinstance(signature.get(m), str) for m in ("alg", "key", "mac")):
        raise Rejection("signature-invalid", "no 'signature' object with string alg, key and mac")
    if signature["alg"] != SIGNATURE_ALG:
        raise Rejection("signature-invalid", f"signature alg {signature['alg']!r} is not {SIGNATURE_ALG!r}"[:200])
    if not is_key_id(signature["key"]):
        raise Rejection("signature-invalid", f"signature key {signature['key']!r} is not a key id"[:200])
    if signature["key"] not in keys:
        raise Rejection("unknown-key", f"signed with key {signature['key']!r}, not in this reader's key set")
    expected = hmac.new(keys.mac_key(signature["key"]), signed_text(header), hashlib.sha256).hexdigest()
    mac = signature["mac"].translate(_ASCII_LOWER)
    if not hmac.compare_digest(expected.encode("ascii"), mac.encode("utf-8")):
        raise Rejection("signature-invalid", f"the signature does not verify with key {signature['key']!r}")
    encryption = header.get("encryption")
    if encryption is None:
        return data, mac
    if not isinstance(encryption, dict) or not all(isinstance(encryption.get(m), str) for m in ("alg", "key", "nonce")):
        raise Rejection("decryption-failed", "'encryption' is not an object with string alg, key and nonce")
    if encryption["alg"] != ENCRYPTION_ALG:
        raise Rejection("decryption-failed", f"encryption alg {encryption['alg']!r} is not {ENCRYPTION_ALG!r}"[:200])
    if _NONCE_RE.fullmatch(encryption["nonce"]) is None:
        raise Rejection("decryption-failed", "the encryption nonce is not 24 hex digits")
    if encryption["key"] not in keys:
        raise Rejection("unknown-key", f"encrypted with key {encryption['key']!r}, not in this reader's key set"[:200])
    aesgcm, invalid_tag = _aesgcm()
    try:
        plaintext = aesgcm(keys.aes_key(encryption["key"])).decrypt(bytes.fromhex(encryption["nonce"]), data, None)
    except invalid_tag:
        raise Rejection("decryption-failed", f"the AES-GCM tag does not verify with key {encryption['key']!r}") from None
    return plaintext, mac


def payload_mac(payload: bytes) -> str:
    """The `signature.mac` (lower case) of a payload's header, for the claims of its round (§10.5); "" if the payload
    has no header line, its header fails checks 3-4 of §4, or it has no string `signature.mac`."""
    newline = payload.find(b"\n", 0, MAX_HEADER_BYTES + 1)
    if newline < 0:
        return ""
    try:
        header = _parse_header(payload[:newline])
    except Rejection:
        return ""
    mac = _member(header, "signature", "mac")
    return mac.translate(_ASCII_LOWER) if isinstance(mac, str) else ""


# ---------------------------------------------------------------------------------------------------------------
# The instance status (§9.1)


@dataclass(frozen=True)
class InstanceStatus:
    """A birth (`online`) or a death notice (`dead`) of one connection (incarnation) of a participant."""

    instance: str
    incarnation: int
    state: str  # "online" or "dead"
    released: int

    @property
    def released_through(self) -> int:
        """§9.1: max(released, incarnation) for a death notice, released for a birth."""
        return max(self.released, self.incarnation) if self.state == "dead" else self.released

    def encode(self) -> bytes:
        return json.dumps(
            {
                "format": STATUS_FORMAT,
                "incarnation": self.incarnation,
                "instance": self.instance,
                "released": self.released,
                "state": self.state,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8")


def decode_status(payload: bytes, topic_instance: str) -> Optional[InstanceStatus]:
    """The status on `{prefix}/instances/{topic_instance}`, or None if a reader ignores it (§9.1): not a JSON
    object, another `format`, an `instance` other than the topic's, a key missing (null counts as absent, as in a
    header) or of the wrong type. Integers are read like a header's (§4: exact decimal values, 1.0 is 1); of a
    repeated key the first value counts (as for swift-handoff's reader)."""
    try:
        status = json.loads(
            payload.decode("utf-8-sig"),
            parse_constant=_reject_constant,
            object_pairs_hook=lambda pairs: dict(reversed(pairs)),
            parse_int=JSONNumber,
            parse_float=JSONNumber,
        )
    except (ValueError, RecursionError):
        return None
    if not isinstance(status, dict) or status.get("format") != STATUS_FORMAT:
        return None
    if status.get("instance") != topic_instance:
        return None
    incarnation = _integer(status.get("incarnation"), 1, INT64_MAX)
    released = _integer(status.get("released"), 0, INT64_MAX)
    state = status.get("state")
    if incarnation is None or released is None or state not in ("online", "dead"):
        return None
    return InstanceStatus(topic_instance, incarnation, state, released)


# ---------------------------------------------------------------------------------------------------------------
# Rounds (§5)


@dataclass
class Round:
    """What one participant saw on one handoff topic since the last non-empty message."""

    topic: str
    label_level: str
    handoff_id: str
    payload: bytes
    number: int  # 1 for the first non-empty message seen on the topic, 2 for the next, ...
    verdict: Optional[str] = None  # the instance named by the first claim of the round
    verdict_purpose: Optional[str] = None
    claimed: bool = False  # this participant published a claim in this round
    readable: bool = True  # the payload passed §4 "Reading an envelope"
    stray: bool = False  # a rejected payload on the topic of an open round: it opened no round (§5 rule 1)
    checkpoint: bool = False  # on a checkpoint topic (§9.3): `handoff_id` is then the writer's instance level
    envelope_id: Optional[str] = None  # the header's id, if readable
    incarnation: Optional[int] = None  # a readable checkpoint's incarnation
    released_at_verdict: bool = False  # a checkpoint released (§9.3) when its verdict arrived
    mac: str = ""  # §10.5: the `signature.mac` of the round's payload (lower case; "" if none), bound into its claims
    origin_instance: Optional[str] = None  # a readable envelope's origin.instance
    rejected: bool = False  # the racer rejected it (§7): it never restores it (§10.6)
    restored_at: Optional[float] = None  # §10.6: monotonic time the restore that opened this round arrived
    restored_by: Optional[str] = None  # the `handoff-restore-by` of the message that opened this round
    restores: int = 0  # §10.6: how often this participant restored this round
    clears: int = 0  # clears (not claims) and stray payloads seen in this round: the restore generation
    restore_seen: bool = False  # a restore of this round arrived since its last clear
    restores_exhausted: bool = False  # the error of §10.6 step 2 was logged

    @property
    def is_open(self) -> bool:
        """§5 rule 1: a readable handoff seen and no verdict yet."""
        return self.readable and self.verdict is None

    @property
    def key(self) -> str:
        """What a race result is filed under: the handoff id, or a checkpoint's own id (its topic names its writer)."""
        if not self.checkpoint:
            return self.handoff_id
        return self.envelope_id or f"{self.handoff_id}#{self.number}"


def user_properties(message: mqtt.MQTTMessage) -> list[tuple[str, str]]:
    props = getattr(message, "properties", None)
    return list(getattr(props, "UserProperty", []) or []) if props is not None else []


def first_property(pairs: list[tuple[str, str]], key: str) -> Optional[str]:
    return next((value for name, value in pairs if name == key), None)


# ---------------------------------------------------------------------------------------------------------------
# A participant: one MQTT 5 connection


class ProtocolError(Exception):
    pass


def _new_client(client_id: str) -> mqtt.Client:
    """An MQTT 5 client with paho 1.x callback signatures (paho 2.x keeps them on request)."""
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, protocol=mqtt.MQTTv5)
    return mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)


class Participant:
    """One process's connection to the broker (§1): it initiates, watches, claims and dead-letters."""

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str,
        instance: Optional[str] = None,
        session_expiry: int = 300,
        timeout: float = 10.0,
        will_delay: Optional[int] = None,
        keys: Optional[KeySet] = None,
        encrypt: bool = False,
    ) -> None:
        validate_prefix(prefix)
        # §10: keyed with `keys` (signs and verifies envelopes and claims; encrypts with `encrypt`), or not.
        if encrypt and keys is None:
            raise ValueError("--encrypt needs --keys")
        if keys is not None:
            _aesgcm()  # fail at once, not at the first encrypted envelope
        self.keys = keys
        self.encrypt = encrypt
        self.restore_log: list[dict[str, Any]] = []  # §10.6: the restores this participant published
        self.topics = Topics(prefix)
        self.instance = instance or new_id()
        if not is_valid_id(self.instance):
            raise ValueError(f"invalid instance id {self.instance!r}")
        self.host, self.port, self.timeout = host, port, timeout
        self.session_expiry = session_expiry
        self.origin = {"instance": self.instance, "host": socket.gethostname(), "pid": os.getpid()}
        # §9.1: a participant that keeps checkpoints sends a Will with each CONNECT (None: no Will, no checkpoints).
        self.will_delay = will_delay
        if will_delay is not None and session_expiry < will_delay:
            raise ValueError("the session expiry must be at least the Will delay (§9.1)")

        self._lock = threading.Condition()
        self._connected = False
        self._connect_count = 0
        self._subacks: dict[int, list[int]] = {}
        self._watched: set[str] = set()  # handoff filters
        self._rounds: dict[str, Round] = {}  # topic -> current round
        self._opened: list[Round] = []  # rounds opened since take_opened_rounds()
        self._decided: list[Round] = []  # rounds decided since take_decided_rounds()
        self._collectors: dict[str, dict[str, mqtt.MQTTMessage]] = {}  # filter prefix -> topic -> message
        self._markers: set[bytes] = set()
        self._sync_subscribed = False
        # §9: the incarnation of the current connection, and of the next CONNECT (its Will names it).
        self.incarnation = 0
        self._next_incarnation = 1
        self.born_incarnation = 0  # the incarnation whose birth was published (0: none on this connection)
        self._statuses: dict[str, InstanceStatus] = {}  # instance -> its latest status (as read)
        self._released_through: dict[str, int] = {}  # instance -> the highest "released through" seen
        self._status_changed = False  # a "released through" went up since take_status_change()
        self._online: dict[str, tuple[int, bool]] = {}  # §5 "Ranked claims": instance -> (incarnation, online)
        self._actions: list[Callable[[], None]] = []  # publishes decided under the lock, done after it

        self._client = _new_client(f"handoff-{self.instance}")
        self._client.max_inflight_messages_set(100)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._set_will()

    # -- connection ----------------------------------------------------------------------------------------

    def connect(self) -> "Participant":
        """Connects with a persistent session (clean start 0, session expiry; §5 'Disconnects mid-claim')."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry
        self._client.connect(self.host, self.port, keepalive=30, clean_start=False, properties=properties)
        self._client.loop_start()
        self._wait(lambda: self._connected, "CONNACK")
        return self

    def close(self) -> None:
        """Disconnects and ends the session at once (session expiry 0 in the DISCONNECT)."""
        properties = Properties(PacketTypes.DISCONNECT)
        properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._client.loop_stop()

    def __enter__(self) -> "Participant":
        return self.connect()

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _on_connect(self, client: mqtt.Client, _: Any, flags: dict[str, Any], reason: Any, __: Any) -> None:
        if reason != 0:
            print(f"warning: connection refused: {reason}", file=sys.stderr)
            return
        with self._lock:
            session_lost = self._connect_count > 0 and not flags.get("session present")
            self._connect_count += 1
            self.incarnation = self._next_incarnation
            if session_lost:
                # The broker kept no session: verdicts may have been missed. Forget every round; claims in
                # flight then never get a verdict here, so they are never merged (§5). The waiting handoffs
                # come back as retained messages with the new subscriptions.
                self._rounds.clear()
                print("warning: the broker kept no session; waiting handoffs are read again", file=sys.stderr)
            self._connected = True
            self._lock.notify_all()
        if session_lost:
            for topic_filter in [self.topics.sync(self.instance), *self._watched]:
                client.subscribe(topic_filter, options=self._watch_options())

    def _set_will(self) -> None:
        """§9.1: the Will of the next CONNECT: the death notice of its incarnation, retained, QoS 1, delayed."""
        if self.will_delay is None:
            return
        with self._lock:
            incarnation = self._next_incarnation
        properties = Properties(PacketTypes.WILLMESSAGE)
        properties.WillDelayInterval = self.will_delay
        properties.ContentType = "application/json"
        notice = InstanceStatus(self.instance, incarnation, "dead", incarnation)
        self._client.will_set(self.topics.status(self.instance), notice.encode(), qos=1, retain=True, properties=properties)

    def _on_disconnect(self, *_: Any) -> None:
        with self._lock:
            self._connected = False
            self.born_incarnation = 0
            # The next CONNECT is a new connection: a new incarnation, and a Will that names it (a Will is fixed at
            # CONNECT, §9.1). paho reconnects from its network thread after this callback.
            self._next_incarnation = max(self._next_incarnation, self.incarnation + 1)
        self._set_will()

    def _on_subscribe(self, _: mqtt.Client, __: Any, mid: int, reason_codes: list[Any], ___: Any) -> None:
        with self._lock:
            self._subacks[mid] = [int(code.value) for code in reason_codes]
            self._lock.notify_all()

    def _wait(self, condition: Callable[[], bool], what: str, timeout: Optional[float] = None) -> None:
        with self._lock:
            if not self._lock.wait_for(condition, timeout if timeout is not None else self.timeout):
                raise TimeoutError(f"timed out waiting for {what}")

    # -- primitives ----------------------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        retain: bool,
        user: Optional[list[tuple[str, str]]] = None,
        content_type: Optional[str] = None,
        wait: bool = True,
    ) -> mqtt.MQTTMessageInfo:
        """QoS 1 publish; with `wait`, returns once the PUBACK arrived."""
        properties = Properties(PacketTypes.PUBLISH)
        if user:
            properties.UserProperty = user
        if content_type:
            properties.ContentType = content_type
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            raise ProtocolError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if wait:
            self.wait_puback(info, topic)
        return info

    def wait_puback(self, info: mqtt.MQTTMessageInfo, topic: str) -> None:
        """§4: a PUBACK with a reason code below 0x80 is a success, 0x10 (no matching subscribers) included.
        (paho 1.6 does not expose the reason code: every PUBACK counts as a success here.)"""
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK for {topic}")

    @staticmethod
    def _watch_options(qos: int = 1) -> SubscribeOptions:
        return SubscribeOptions(qos=qos, noLocal=False, retainAsPublished=False, retainHandling=0)

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribes with QoS 1 (or `qos`), No Local 0, Retain Handling 0 and waits for a successful SUBACK."""
        result, mid = self._client.subscribe(topic_filter, options=self._watch_options(qos))
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise ProtocolError(f"subscribe to {topic_filter} failed: {mqtt.error_string(result)}")
        self._wait(lambda: mid in self._subacks, f"SUBACK of {topic_filter}")
        codes = self._subacks.pop(mid)
        if codes != [qos]:
            raise ProtocolError(f"subscription to {topic_filter} granted {codes}, not QoS {qos}")

    def unsubscribe(self, topic_filter: str) -> None:
        self._client.unsubscribe(topic_filter)

    def sync(self) -> None:
        """Publishes a random ordering marker on the participant's sync topic and waits for it (§6)."""
        sync_topic = self.topics.sync(self.instance)
        if not self._sync_subscribed:
            self.subscribe(sync_topic)
            self._sync_subscribed = True
        marker = secrets.token_hex(16).encode("ascii")
        self.publish(sync_topic, marker, retain=False)
        self._wait(lambda: marker in self._markers, "the sync marker")
        with self._lock:
            self._markers.discard(marker)

    # -- incoming messages -----------------------------------------------------------------------------------

    def _on_message(self, _: mqtt.Client, __: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        with self._lock:
            if topic == self.topics.sync(self.instance):
                self._markers.add(bytes(message.payload))
            elif self.topics.status_instance(topic) is not None:
                self._track_status(self.topics.status_instance(topic) or "", bytes(message.payload))
            else:
                for prefix, messages in self._collectors.items():
                    if topic.startswith(prefix):
                        messages[topic] = message
                try:
                    kind, label_level, handoff_id = self.topics.split(topic)
                except ValueError:
                    kind = ""
                if kind in ("handoffs", "checkpoints"):
                    self._track(topic, label_level, handoff_id, message, checkpoint=kind == "checkpoints")
            self._lock.notify_all()
            actions, self._actions = self._actions, []
        for action in actions:
            action()

    def _track_status(self, instance: str, payload: bytes) -> None:
        """§9.1: keeps, per instance, the highest "released through" seen (it never goes down). A zero-length
        message (a removed status) and a status a reader ignores change nothing. Called with the lock held."""
        if not payload:
            self._online.pop(instance, None)  # §5 "Ranked claims": a removed status is no candidate
        status = decode_status(payload, instance) if payload else None
        if status is None:
            return
        known = self._online.get(instance)
        # §5 "Ranked claims": the highest incarnation counts; at an equal one, a death notice beats a birth.
        if known is None or status.incarnation > known[0] or (status.incarnation == known[0] and known[1]):
            self._online[instance] = (status.incarnation, status.state == "online")
        self._statuses[instance] = status
        if status.released_through > self._released_through.get(instance, 0):
            self._released_through[instance] = status.released_through
            self._status_changed = True

    def online_instances(self) -> set[str]:
        """§5 "Ranked claims": the other instances whose latest status (§9.1) says they are online."""
        with self._lock:
            return {instance for instance, (_, online) in self._online.items() if online and instance != self.instance}

    def ranked_delay(self, round_id: str, origin: Optional[str], step: float = RANK_STEP, max_steps: int = RANK_MAX_STEPS) -> float:
        """§5 "Ranked claims": seconds this participant waits for a verdict before its merge claim of round `round_id`."""
        if step <= 0 or max_steps <= 0:
            return 0.0
        return min(claim_rank(round_id, self.instance, self.online_instances(), origin), max_steps) * step

    def remove_status(self) -> None:
        """§9.1 "Graceful shutdown" without checkpoints: removes its status (a zero-length retained publish)."""
        self.publish(self.topics.status(self.instance), b"", retain=True)

    def released_through(self, instance: str) -> int:
        """The highest "released through" seen for `instance` (0: nothing released)."""
        with self._lock:
            return self._released_through.get(instance, 0)

    def take_status_change(self) -> bool:
        """Whether some instance's "released through" went up since the last call."""
        with self._lock:
            changed, self._status_changed = self._status_changed, False
            return changed

    def _track(
        self, topic: str, label_level: str, handoff_id: str, message: mqtt.MQTTMessage, checkpoint: bool = False
    ) -> None:
        """Applies the rule of §5 to one message of a handoff topic, or of a checkpoint topic (§9.3; there
        `handoff_id` is the topic's instance level), with the signed claims of §10.5 and the repair of §10.6.
        Called with the lock held."""
        payload = bytes(message.payload)
        pairs = user_properties(message)
        current = self._rounds.get(topic)
        if payload:
            restorer = first_property(pairs, RESTORE_BY)
            if restorer and current is not None and current.is_open and payload == current.payload:
                # §10.6: a restore of the open round changes nothing (its claims in flight stay valid).
                current.restore_seen = True
                return
            envelope: Optional[Envelope] = None
            try:
                envelope = decode_envelope(
                    payload, decode_label(label_level), handoff_id, checkpoint=checkpoint, keys=self.keys
                )
                readable = True
            except (Rejection, ValueError):
                readable = False
            if not readable and current is not None and current.is_open:
                # §5 rule 1: a rejected payload on the topic of an open round neither opens a round nor closes
                # it; it is dead-lettered without a claim, and the waiting handoff stays claimable (and is
                # restored for later subscribers, §10.6).
                self._opened.append(
                    Round(topic, label_level, handoff_id, payload, current.number, readable=False, stray=True, checkpoint=checkpoint)
                )
                self._schedule_restore(current)
                return
            number = current.number + 1 if current else 1
            opened = Round(
                topic, label_level, handoff_id, payload, number, readable=readable, checkpoint=checkpoint,
                envelope_id=envelope.id if envelope else None, incarnation=envelope.incarnation if envelope else None,
                mac=(envelope.mac or "") if envelope else payload_mac(payload),
                origin_instance=envelope.origin.get("instance") if envelope else None,
            )
            if restorer:
                # §10.6: a round opened by a restore is not claimed for merging for 250 ms; one opened by our own
                # restore (seen live) is a stale restore: claimed `already-merged` at once.
                opened.restored_at = time.monotonic()
                opened.restored_by = restorer
                if restorer == self.instance and not message.retain:
                    self._actions.append(lambda: self.publish_claim(opened, PURPOSE_ALREADY_MERGED))
                    print(f"own restore of a decided round on {topic}: claimed already-merged", file=sys.stderr)
            self._rounds[topic] = opened
            self._opened.append(opened)
            return
        claimer = first_property(pairs, CLAIM_BY)
        if current is None or current.verdict is not None:
            return  # §5 rule 4
        purpose = first_property(pairs, CLAIM_PURPOSE)
        if claimer and (
            self.keys is None
            or self.keys.claim_verifies(first_property(pairs, CLAIM_SIGNATURE), topic, claimer, purpose, current.mac)
        ):
            current.verdict = claimer
            current.verdict_purpose = purpose
            if checkpoint:
                # Whether the checkpoint was released when its verdict came (statuses are tracked under this lock,
                # in the order received): a claim that beat our own processing of the release still counts.
                through = self._released_through.get(handoff_id, 0)
                current.released_at_verdict = (
                    current.incarnation <= through if current.incarnation is not None else through > 0
                )
            self._decided.append(current)
            return
        # §5 rule 3 (and §10.5): not a claim. It removed the retained copy: restore it (§10.6).
        if claimer:
            print(f"a claim by {claimer!r} on {topic} does not verify: not a claim", file=sys.stderr)
        if current.is_open:
            self._schedule_restore(current)

    # -- repair (§10.6) ----------------------------------------------------------------------------------------

    RESTORE_DELAY = 0.1  # seconds: the random delay before a restore is uniform in 0 ... this
    RESTORE_HOLD = 0.25  # seconds a round opened by a restore is not claimed for merging
    MAX_RESTORES = 3  # restores of one round by one participant

    def _schedule_restore(self, round_: Round) -> None:
        """After a clear that is not a claim, or a rejected payload that replaced the round's retained copy: restores
        the round's payload after a random delay, unless a restore arrives first (§10.6). Called with the lock held."""
        own = round_.handoff_id == self.instance if round_.checkpoint else round_.origin_instance == self.instance
        if own or round_.rejected:
            return
        round_.clears += 1
        round_.restore_seen = False
        if round_.restores >= self.MAX_RESTORES:
            if not round_.restores_exhausted:
                round_.restores_exhausted = True
                print(
                    f"error: {round_.topic} was cleared again after {self.MAX_RESTORES} restores: not restored any more "
                    "(the participants that saw it still hold the round)",
                    file=sys.stderr,
                )
            return
        generation = round_.clears
        timer = threading.Timer(random.uniform(0, self.RESTORE_DELAY), self._restore, args=(round_, generation))
        timer.daemon = True
        timer.start()

    def _restore(self, round_: Round, generation: int) -> None:
        with self._lock:
            if (
                self._rounds.get(round_.topic) is not round_
                or not round_.is_open
                or round_.restore_seen
                or round_.clears != generation
                or round_.restores >= self.MAX_RESTORES
                or not self._connected
            ):
                return
            round_.restores += 1
            self.restore_log.append({"topic": round_.topic, "round": round_.number, "restore": round_.restores})
        print(f"restoring {round_.topic} (restore {round_.restores} of round {round_.number})", file=sys.stderr)
        self.publish(
            round_.topic, round_.payload, retain=True, user=[(RESTORE_BY, self.instance)],
            content_type=ENVELOPE_CONTENT_TYPE, wait=False,
        )

    # -- watching (§6) ---------------------------------------------------------------------------------------

    def watch(self, label: str, checkpoints: bool = False) -> None:
        """Subscribes to the label's handoffs; returns once every waiting one has arrived (sync marker).

        With `checkpoints` (§9.3), first to the statuses, and after the handoffs to the label's checkpoints: by A3
        the retained statuses then arrive before the retained checkpoints (so that a released one is known as
        such), and the handoffs before the checkpoints they replace (§9.6)."""
        filters = [self.topics.status_filter()] if checkpoints else []
        filters.append(self.topics.handoff_filter(label))
        if checkpoints:
            filters.append(self.topics.checkpoint_filter(label))
        for topic_filter in filters:
            self.subscribe(topic_filter)
            self._watched.add(topic_filter)
        self.sync()

    def take_opened_rounds(self) -> list[Round]:
        """The rounds opened since the last call, oldest first."""
        with self._lock:
            opened, self._opened = self._opened, []
            return opened

    def take_decided_rounds(self) -> list[Round]:
        """The rounds whose verdict arrived since the last call, in the order the verdicts arrived."""
        with self._lock:
            decided, self._decided = self._decided, []
            return decided

    def wait_for_rounds(self, timeout: float) -> None:
        """Waits until a round was opened or decided since they were last taken, or a status released
        checkpoints, at most `timeout` seconds."""
        with self._lock:
            self._lock.wait_for(lambda: bool(self._opened or self._decided or self._status_changed), timeout)

    def current_round(self, topic: str) -> Optional[Round]:
        with self._lock:
            return self._rounds.get(topic)

    # -- the instance status (§9.1) --------------------------------------------------------------------------

    def announce(self) -> InstanceStatus:
        """§9.1 "Birth", after a CONNECT: subscribes to the statuses (QoS 0), reads its own back up to an ordering
        marker (§6), then publishes its birth (retained, QoS 1) with `released` = the highest "released through"
        of its own statuses. Returns the birth; `released_through(self.instance)` tells whether it is fenced."""
        with self._lock:
            incarnation = self.incarnation
        self.subscribe(self.topics.status_filter(), qos=0)
        self.sync()
        birth = InstanceStatus(self.instance, incarnation, "online", self.released_through(self.instance))
        self.publish(self.topics.status(self.instance), birth.encode(), retain=True, content_type="application/json")
        with self._lock:
            if self.incarnation == incarnation and self._connected:
                self.born_incarnation = incarnation
        return birth

    def heartbeat(self) -> None:
        """§9.1 "Heartbeat": the birth again, not retained, QoS 0 (only once born on this connection)."""
        with self._lock:
            incarnation = self.born_incarnation
        if incarnation:
            beat = InstanceStatus(self.instance, incarnation, "online", self.released_through(self.instance))
            self._client.publish(self.topics.status(self.instance), beat.encode(), qos=0, retain=False)

    # -- initiating (§4) -------------------------------------------------------------------------------------

    def make_envelope(self, label: str, vsn: int, data: bytes, content_type: str = "application/json") -> Envelope:
        return Envelope(new_id(), label, vsn, rfc3339_ms(), dict(self.origin), content_type, data)

    def initiate(self, envelopes: list[Envelope]) -> None:
        """Publishes the handoffs (retained, QoS 1) and returns once every PUBACK arrived."""
        sent = []
        for envelope in envelopes:
            topic = self.topics.handoff(envelope.label, envelope.id)
            info = self.publish(
                topic, self.encode(envelope), retain=True, content_type=ENVELOPE_CONTENT_TYPE, wait=False
            )
            sent.append((info, topic))
        for info, topic in sent:
            self.wait_puback(info, topic)

    # -- claiming (§5) and dead-lettering (§7) -----------------------------------------------------------------

    def publish_claim(self, round_: Round, purpose: str) -> None:
        """Publishes a claim for a round this participant has seen; the verdict comes on the subscription."""
        with self._lock:
            if round_.verdict is not None or round_.claimed:
                return
            round_.claimed = True
        self.publish(round_.topic, b"", retain=True, user=self.claim_properties(round_.topic, purpose, round_.mac), wait=False)

    def claim_properties(self, topic: str, purpose: str, round_mac: str) -> list[tuple[str, str]]:
        """The user properties of a claim: claimer and purpose (§5), and for a keyed participant the claim's
        signature, bound to the round's `signature.mac` (§10.5)."""
        user = [(CLAIM_BY, self.instance), (CLAIM_PURPOSE, purpose)]
        if self.keys is not None:
            user.append((CLAIM_SIGNATURE, self.keys.claim_signature(topic, self.instance, purpose, round_mac)))
        return user

    def encode(self, envelope: Envelope) -> bytes:
        """The envelope's payload: signed (and encrypted with --encrypt) for a keyed participant (§10); sets
        `envelope.mac` and, if encrypted, `envelope.stored_sha256`."""
        if self.keys is None:
            return envelope.encode()
        payload, envelope.mac = seal(envelope, self.keys, self.encrypt)
        if self.encrypt:
            envelope.stored_sha256 = hashlib.sha256(payload[payload.index(b"\n") + 1 :]).hexdigest()
        return payload

    def await_verdict(self, round_: Round, timeout: Optional[float] = None) -> str:
        """Waits for the round's verdict; the instance it names."""
        self._wait(lambda: round_.verdict is not None, f"the verdict on {round_.topic}", timeout)
        assert round_.verdict is not None
        return round_.verdict

    def claim(self, round_: Round, purpose: str = PURPOSE_MERGE) -> bool:
        """Claims and waits for the verdict: True if and only if it names this participant."""
        self.publish_claim(round_, purpose)
        return self.await_verdict(round_) == self.instance

    def dead_letter(self, round_: Round, rejection: Rejection, claim: bool = True) -> None:
        """Stores the payload verbatim as a dead letter (waits for the PUBACK), then claims the handoff
        with purpose dead-letter (§7), except for a stray payload on the topic of an open round (§5 rule 1),
        whose claim would decide the waiting handoff's round. Does not wait for the verdict."""
        user = [
            (DEAD_REASON, rejection.reason),
            (DEAD_DETAIL, truncate_detail(rejection.detail)),
            (DEAD_BY, self.instance),
            (DEAD_AT, rfc3339_ms()),
            (DEAD_TOPIC, round_.topic),
        ]
        dead_topic = self.topics.dead_letter(round_.label_level, round_.handoff_id)
        self.publish(dead_topic, round_.payload, retain=True, user=user)
        if claim and not round_.stray:
            self.publish_claim(round_, PURPOSE_DEAD_LETTER)

    # -- reading retained messages -----------------------------------------------------------------------------

    def retained(self, topic_filter: str) -> dict[str, mqtt.MQTTMessage]:
        """The retained messages currently matching a filter ending in '#' or '+' (subscribe, sync)."""
        prefix = topic_filter.rstrip("#+")
        with self._lock:
            self._collectors[prefix] = {}
        self.subscribe(topic_filter)
        self.sync()
        self.unsubscribe(topic_filter)
        with self._lock:
            messages = self._collectors.pop(prefix)
        return {topic: message for topic, message in messages.items() if message.retain and message.payload}


# ---------------------------------------------------------------------------------------------------------------
# The race: watch, claim everything, record the verdicts


@dataclass
class RaceResult:
    """What one racer saw of one handoff, or of one released checkpoint."""

    winner: str
    purpose: Optional[str]
    merged: bool
    data: Any = None
    sha256: Optional[str] = None
    rejection: Optional[str] = None
    origin: Optional[str] = None
    raw: Optional[str] = None  # the data bytes, base64
    checkpoint: Optional[bool] = None  # True for a checkpoint (§9)
    incarnation: Optional[int] = None  # a checkpoint's incarnation
    topic: Optional[str] = None  # a checkpoint's topic

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None or key == "data"}


@dataclass
class Racer:
    """Claims every handoff of a label that it can read; merges the ones whose verdict names it. With
    `checkpoints`, also the checkpoints of the label once released by their writers' statuses (§9.3)."""

    participant: Participant
    label: str
    readable_versions: set[int]
    claim_delay: float = 0.0  # seconds each claim waits at least (to let other racers win some races)
    claim_jitter: float = 0.0  # seconds of random delay added to each claim
    checkpoints: bool = False
    rank_step: float = RANK_STEP  # §5 "Ranked claims": seconds per rank (0: ranking off, every claim at once)
    rank_max_steps: int = RANK_MAX_STEPS
    results: dict[str, RaceResult] = field(default_factory=dict)
    held_verdicts: list[dict[str, Any]] = field(default_factory=list)  # verdicts on checkpoints it held (not released)
    _due: list[tuple[float, Round]] = field(default_factory=list)  # claims to publish, and when
    _accepted: dict[tuple[str, int], tuple[Envelope, Any]] = field(default_factory=dict)  # (topic, round) -> envelope, state
    _rejections: dict[tuple[str, int], Rejection] = field(default_factory=dict)  # (topic, round) -> why
    _envelopes: dict[tuple[str, int], Envelope] = field(default_factory=dict)  # readable checkpoints, by round
    _held: list[Round] = field(default_factory=list)  # checkpoint rounds not (yet) released (§9.3 rule 1)
    _released: set[tuple[str, int]] = field(default_factory=set)  # checkpoint rounds released and decided upon
    _handed_off: set[tuple[str, str]] = field(default_factory=set)  # (label level, origin instance) of handoffs seen (§9.6)
    _merged_topics: set[str] = field(default_factory=set)  # checkpoint topics of which this racer merged a round (§9.7)
    _merged_handoffs: set[str] = field(default_factory=set)  # handoff topics this racer merged (§5 "Broker crashes")

    def handle_opened(self) -> None:
        """Decides what to do with each handoff that arrived, and claims the ones it wants; checkpoints are
        held until released."""
        for round_ in self.participant.take_opened_rounds():
            if round_.checkpoint:
                self._open_checkpoint(round_)
                continue
            if round_.stray:
                # Rejected on the topic of an open round: dead-letter it, keep the waiting handoff (§5 rule 1).
                self._dead_letter_stray(round_)
                continue
            self._decide(round_)
        self.release_due()
        self.claim_due()

    def _dead_letter_stray(self, round_: Round) -> None:
        try:
            decode_envelope(
                round_.payload, decode_label(round_.label_level), round_.handoff_id, checkpoint=round_.checkpoint,
                keys=self.participant.keys,
            )
        except Rejection as rejection:
            if rejection.left_in_place:
                print(f"left in place: {round_.topic}: {rejection}", file=sys.stderr)
            else:
                self.participant.dead_letter(round_, rejection)

    def _open_checkpoint(self, round_: Round) -> None:
        """§9.3: a checkpoint round is held until its writer's "released through" reaches its incarnation."""
        if round_.handoff_id == self.participant.instance:
            return  # rule 4: never claim its own checkpoints (the round is still tracked)
        if round_.stray:
            # Rejected while another checkpoint of the topic waits undecided: as for handoffs (§5 rule 1), it opens
            # no round; like any unreadable checkpoint, it is only dead-lettered once its writer released something.
            if self.participant.released_through(round_.handoff_id) > 0:
                self._dead_letter_stray(round_)
            return
        self._held.append(round_)

    def release_due(self) -> None:
        """Decides upon the held checkpoint rounds that are released now (§9.3 rule 2); drops the ones replaced by
        a newer checkpoint or decided meanwhile."""
        self.participant.take_status_change()
        if not self._held:
            return
        still_held = []
        for round_ in self._held:
            if self.participant.current_round(round_.topic) is not round_ or round_.verdict is not None:
                continue  # replaced by a newer write (a new round), or decided (record_verdicts files it)
            through = self.participant.released_through(round_.handoff_id)
            if round_.readable:
                assert round_.incarnation is not None
                released = round_.incarnation <= through
            else:
                # A checkpoint that fails §4 cannot tell its incarnation: ignored while its writer released nothing,
                # dead-lettered once it released any checkpoint.
                released = through > 0
            if not released:
                still_held.append(round_)
                continue
            self._released.add((round_.topic, round_.number))
            self._decide(round_)
        self._held = still_held

    def _decide(self, round_: Round) -> None:
        """§7 for a handoff or a released checkpoint: reject, leave in place, or schedule a claim."""
        key = (round_.topic, round_.number)
        try:
            envelope = decode_envelope(
                round_.payload, decode_label(round_.label_level), round_.handoff_id, checkpoint=round_.checkpoint,
                keys=self.participant.keys,
            )
            origin = envelope.origin.get("instance")
            if not round_.checkpoint:
                # §9.6: a handoff of the label from `origin` replaces that instance's checkpoint of the label.
                self._handed_off.add((round_.label_level, origin))
                if origin == self.participant.instance:
                    return  # our own handoff: never claimed, but the round is still tracked
                if round_.topic in self._merged_handoffs:
                    # §5 "Broker crashes" (and a stale restore, §10.6): a new round of a handoff this racer merged.
                    self.participant.publish_claim(round_, PURPOSE_ALREADY_MERGED)
                    return
            else:
                self._envelopes[key] = envelope
                if (round_.label_level, origin) in self._handed_off:
                    # §9.6: its writer handed the label off, then crashed before removing this checkpoint.
                    self.participant.publish_claim(round_, PURPOSE_ALREADY_MERGED)
                    return
                if round_.topic in self._merged_topics:
                    # §9.7 "Will vs. a late checkpoint": this racer merged an earlier round of this topic.
                    self.participant.publish_claim(round_, PURPOSE_ALREADY_MERGED)
                    return
            if is_chunk_manifest(envelope) and not round_.checkpoint:
                # §12.2: M's data is checked before claiming; the state exists once the winner read the chunks.
                if envelope.vsn not in self.readable_versions:
                    raise Rejection("unknown-version", f"version {envelope.vsn} is not one of {sorted(self.readable_versions)}")
                state: Any = read_manifest(envelope.data)
            else:
                state = decode_json_state(envelope, self.readable_versions)
        except Rejection as rejection:
            self._rejections[key] = rejection
            with self.participant._lock:
                round_.rejected = True  # §10.6: a participant that rejected a handoff does not restore it
            if rejection.left_in_place:
                print(f"left in place: {round_.topic}: {rejection}", file=sys.stderr)
            else:
                self.participant.dead_letter(round_, rejection)
            return
        self._accepted[key] = (envelope, state)
        delay = self.claim_delay + random.uniform(0, self.claim_jitter)
        due = time.monotonic() + delay
        if round_.restored_at is not None:
            # §10.6: a round opened by a restore is not claimed for merging until 250 ms after the restore arrived.
            due = max(due, round_.restored_at + Participant.RESTORE_HOLD)
        # §5 "Ranked claims": below the first rank, wait for the verdict (publish_claim publishes nothing once it came).
        due += self.participant.ranked_delay(envelope.id, envelope.origin.get("instance"), self.rank_step, self.rank_max_steps)
        self._due.append((due, round_))

    def claim_due(self) -> None:
        """Publishes the merge claims whose delay is over."""
        now = time.monotonic()
        for due, round_ in [entry for entry in self._due if entry[0] <= now]:
            self.participant.publish_claim(round_, PURPOSE_MERGE)
        self._due = [entry for entry in self._due if entry[0] > now]

    def record_verdicts(self) -> None:
        """Records each decided round once; merges (here: keeps the state of) the ones won for merging."""
        for round_ in self.participant.take_decided_rounds():
            key = (round_.topic, round_.number)
            if round_.verdict is None:
                continue
            if round_.checkpoint and key not in self._released and round_.released_at_verdict:
                if round_.handoff_id != self.participant.instance:
                    # Released, and decided by another's claim before this racer got to it: a verdict like any other.
                    self._released.add(key)
                    with contextlib.suppress(Rejection, ValueError):
                        self._envelopes[key] = decode_envelope(
                            round_.payload, decode_label(round_.label_level), round_.handoff_id, checkpoint=True,
                            keys=self.participant.keys,
                        )
            if round_.checkpoint and key not in self._released:
                # Not released here (held, our own, or unreadable while its writer released nothing): its writer's
                # own `already-merged` claim after a handoff (§9.6), or a disagreement on the release.
                envelope = self._envelopes.get(key)
                self.held_verdicts.append(
                    {"topic": round_.topic, "round": round_.number, "winner": round_.verdict,
                     "purpose": round_.verdict_purpose, "incarnation": round_.incarnation, "id": round_.envelope_id}
                )
                continue
            previous = self.results.get(round_.key)
            # A later round of the same handoff (given back by a participant that won it and stopped before merging
            # it, §5 "Stopping") replaces the earlier verdict, unless this racer already merged the handoff.
            if previous is not None and previous.merged:
                continue
            if previous is not None and not round_.checkpoint and round_.verdict_purpose == PURPOSE_ALREADY_MERGED:
                continue  # a resurrected or stale restored round closed as already merged: the earlier verdict stands
            won = round_.verdict == self.participant.instance
            accepted = self._accepted.get(key)
            rejection = self._rejections.get(key)
            merged = won and is_merge_purpose(round_.verdict_purpose) and accepted is not None
            if merged and accepted is not None and isinstance(accepted[1], ChunkManifest):
                accepted, rejection = self._read_chunks(round_, accepted[0], accepted[1])
                merged = accepted is not None
            if won and accepted is None and rejection is None and is_merge_purpose(round_.verdict_purpose):
                print(f"error: won {round_.topic} without having claimed it", file=sys.stderr)
            if merged and round_.checkpoint:
                self._merged_topics.add(round_.topic)
            if merged and not round_.checkpoint:
                self._merged_handoffs.add(round_.topic)
            envelope = accepted[0] if accepted else self._envelopes.get(key)
            self.results[round_.key] = RaceResult(
                winner=round_.verdict,
                purpose=round_.verdict_purpose,
                merged=merged,
                data=accepted[1] if merged and accepted else None,
                sha256=envelope.sha256 if envelope else None,
                rejection=rejection.reason if rejection else None,
                origin=envelope.origin.get("instance") if envelope else None,
                raw=base64.b64encode(envelope.data).decode() if envelope else None,
                checkpoint=True if round_.checkpoint else None,
                incarnation=round_.incarnation if round_.checkpoint else None,
                topic=round_.topic if round_.checkpoint else None,
            )

    def _read_chunks(
        self, round_: Round, manifest_envelope: Envelope, manifest: ChunkManifest
    ) -> tuple[Optional[tuple[Envelope, Any]], Optional[Rejection]]:
        """§12.2 steps 1-6 for a won manifest: (E and its state) once read, checked and decoded, its chunks then
        removed; or the rejection with which M (verbatim) was dead-lettered, its chunks left for an operator."""
        participant = self.participant
        label = decode_label(round_.label_level)
        chunk_filter = participant.topics.chunk_filter(round_.label_level, round_.handoff_id)
        try:
            chunks = {topic: message.payload for topic, message in participant.retained(chunk_filter).items()}
            whole = assemble_chunks(manifest_envelope, manifest, chunks, label, round_.handoff_id, participant.keys)
            state = decode_json_state(whole, self.readable_versions)
        except Rejection as rejection:
            # Won already: the dead letter is stored without a claim of its own (the round is decided).
            participant.dead_letter(round_, rejection, claim=False)
            return None, rejection
        for topic in chunks:
            participant.publish(topic, b"", retain=True)
        return (whole, state), None

    def run(self, expect: int, deadline: float) -> bool:
        """Until `expect` verdicts were seen or the deadline; whether all were."""
        while len(self.results) < expect and time.monotonic() < deadline:
            self.handle_opened()
            self.record_verdicts()
            if len(self.results) < expect:
                self.participant.wait_for_rounds(0.01 if self._due else 0.1)
        return len(self.results) >= expect


# ---------------------------------------------------------------------------------------------------------------
# Malformed payloads for dead-letter tests


def garbage_payloads(participant: Participant, label: str) -> list[tuple[str, str, bytes, str]]:
    """(kind, handoff id, payload, expected §7 outcome) for payloads a successor must not merge."""
    good = participant.make_envelope(label, 1, b'{"text":"ok","n":1}')

    def envelope_with(**overrides: Any) -> tuple[str, bytes]:
        envelope = participant.make_envelope(label, 1, b'{"text":"ok","n":1}')
        header = envelope.header()
        header.update(overrides)
        header["id"] = overrides.get("id", envelope.id)
        return envelope.id, encode_header(header) + b"\n" + envelope.data

    cases: list[tuple[str, str, bytes, str]] = []
    cases.append(("not-an-envelope", new_id(), b"\x00\xffhello, this is not an envelope", "malformed"))
    cases.append(("header-not-json", new_id(), b"{not json}\n{}", "malformed"))
    cases.append(("header-not-object", new_id(), b"[1,2,3]\n{}", "malformed"))
    truncated = participant.make_envelope(label, 1, b'{"text":"a longer state","n":2}')
    cases.append(("truncated", truncated.id, truncated.encode()[:-5], "truncated"))
    corrupt = participant.make_envelope(label, 1, b'{"text":"ok","n":3}')
    cases.append(("integrity", corrupt.id, corrupt.encode().replace(b'"n":3', b'"n":4'), "integrity-failure"))
    wrong_label_id, wrong_label = envelope_with(label=label + "-other")
    cases.append(("label-mismatch", wrong_label_id, wrong_label, "label-mismatch"))
    cases.append(("id-mismatch", new_id(), good.encode(), "label-mismatch"))
    undecodable = participant.make_envelope(label, 1, b'{"unexpected":true}')
    cases.append(("undecodable-state", undecodable.id, undecodable.encode(), "undecodable-state"))
    newer_id, newer = envelope_with(format="swift-handoff/2")
    cases.append(("unsupported-format", newer_id, newer, "left-in-place"))
    future = participant.make_envelope(label, 99, b'{"text":"from the future","n":99}')
    cases.append(("unknown-version", future.id, future.encode(), "left-in-place"))
    return cases


# ---------------------------------------------------------------------------------------------------------------
# Envelope edge cases, to compare readers (no broker needed)


def envelope_corpus() -> list[tuple[str, str, str, bytes]]:
    """(name, topic label, topic id, payload): valid and invalid envelopes at the edges of §4."""
    label, origin = "corpus/é", {"instance": "corpus-writer", "host": "h", "pid": 7}
    data = b'{"text":"ok","n":1}'

    def header(**changes: Any) -> dict[str, Any]:
        base = Envelope("corpus-id", label, 1, "2026-11-25T06:00:00.123Z", origin, "application/json", data).header()
        base.update(changes)
        return {key: value for key, value in base.items() if value is not _DROP}

    def build(fields: dict[str, Any], body: bytes = data) -> bytes:
        return encode_header(fields) + b"\n" + body

    sha = hashlib.sha256(data).hexdigest()

    def raw(old: bytes, new: bytes) -> bytes:
        """The valid payload with the JSON text `old` of its header replaced by `new`."""
        valid = build(header())
        assert old in valid, old
        return valid.replace(old, new, 1)

    def nested(levels: int) -> bytes:
        """The valid payload with an unknown key whose value nests `levels` arrays (the header adds one)."""
        return raw(b'"vsn":1}', b'"vsn":1,"deep":' + b"[" * levels + b"]" * levels + b"}")

    cases: list[tuple[str, bytes]] = [
        ("valid", build(header())),
        ("unknown keys", build(header(extra={"a": [1, 2]}, zzz=None))),
        ("keys unsorted, spaces", json.dumps(dict(reversed(list(header().items()))), indent=None).encode() + b"\n" + data),
        ("header ends with CR", build(header()).replace(b"\n", b"\r\n", 1)),
        ("empty data", build(header(length=0, sha256=hashlib.sha256(b"").hexdigest()), b"")),
        ("binary data", build(header(contentType="application/octet-stream", length=3, sha256=hashlib.sha256(b"\x00\n\xff").hexdigest()), b"\x00\n\xff")),
        ("createdAt without fraction", build(header(createdAt="2026-11-25T06:00:00Z"))),
        ("createdAt with offset", build(header(createdAt="2026-11-25T08:00:00.123+02:00"))),
        ("createdAt with 6 digits", build(header(createdAt="2026-11-25T06:00:00.123456Z"))),
        ("createdAt lower-case t and z", build(header(createdAt="2026-11-25t06:00:00.123z"))),
        ("createdAt not a date", build(header(createdAt="yesterday"))),
        ("createdAt month 13", build(header(createdAt="2026-13-25T06:00:00.123Z"))),
        ("sha256 upper case", build(header(sha256=sha.upper()))),
        ("sha256 too short", build(header(sha256=sha[:10]))),
        ("sha256 mismatch", build(header(sha256=hashlib.sha256(b"other").hexdigest()))),
        ("vsn 1.0", build(header(vsn=1.0))),
        ("vsn 1e0", build(header()).replace(b'"vsn":1', b'"vsn":1e0')),
        ("vsn -1", build(header(vsn=-1))),
        ("vsn string", build(header(vsn="1"))),
        ("vsn true", build(header(vsn=True))),
        ("vsn 2^63", build(header(vsn=2**63))),
        ("vsn 2^53", build(header(vsn=2**53))),
        ("length 1.0e1", build(header()).replace(b'"length":19', b'"length":1.9e1')),
        ("more data than length", build(header(), data + b" ")),
        ("less data than length", build(header(), data[:-1])),
        ("length negative", build(header(length=-1))),
        ("format missing", build(header(format=_DROP))),
        ("format not a string", build(header(format=2))),
        ("format newer", build(header(format="swift-handoff/2"))),
        ("format newer, other fields broken", build({"format": "swift-handoff/2", "vsn": "x"})),
        ("id invalid characters", build(header(id="corpus id!"))),
        ("id 65 characters", build(header(id="a" * 65))),
        ("label with a control character", build(header(label="corpus/\u0007"))),
        ("label of another topic", build(header(label="corpus/e"))),
        ("id of another topic", build(header(id="other-id"))),
        ("truncated and on another topic", build(header(label="corpus/e"), data[:-1])),
        ("origin without instance", build(header(origin={"host": "h"}))),
        ("origin host null", build(header(origin={"instance": "w", "host": None}))),
        ("origin pid 2^40", build(header(origin={"instance": "w", "pid": 2**40}))),
        ("origin pid string", build(header(origin={"instance": "w", "pid": "7"}))),
        ("origin instance with a slash", build(header(origin={"instance": "a/b"}))),
        ("contentType missing", build(header(contentType=_DROP))),
        ("header null values", build(header(contentType=None))),
        ("duplicate key, last valid", build(header()).replace(b'"vsn":1}', b'"vsn":"x","vsn":1}')),
        ("duplicate key, first valid", build(header()).replace(b'"vsn":1}', b'"vsn":1,"vsn":"x"}')),
        ("header with UTF-8 BOM", b"\xef\xbb\xbf" + build(header())),
        ("header not UTF-8", build(header()).replace(b'"h"', b'"\xff"', 1)),
        ("header escaped slash", build(header()).replace(b"corpus/", b"corpus\\/", 1)),
        ("header not JSON", b"{not json}\n" + data),
        ("header an array", b"[1]\n" + data),
        ("no newline", encode_header(header())),
        ("header over 65536 bytes", build(header(pad="x" * 65_536))),
        ("header exactly 65536 bytes", b""),  # filled in below
        ("NaN in header", build(header()).replace(b'"vsn":1', b'"vsn":NaN')),
        # Numbers: exact decimal values of the text (§4), never a double.
        ("vsn 10E-1", raw(b'"vsn":1}', b'"vsn":10E-1}')),
        ("vsn 100e-2", raw(b'"vsn":1}', b'"vsn":100e-2}')),
        ("vsn 1.5", raw(b'"vsn":1}', b'"vsn":1.5}')),
        ("vsn 12e-1", raw(b'"vsn":1}', b'"vsn":12e-1}')),
        ("vsn 1.00000000000000000001", raw(b'"vsn":1}', b'"vsn":1.00000000000000000001}')),
        ("vsn 2^63-1", raw(b'"vsn":1}', b'"vsn":9223372036854775807}')),
        ("vsn 2^63-1 as 9223372036854775807.0", raw(b'"vsn":1}', b'"vsn":9223372036854775807.0}')),
        ("vsn 2^63-1 as 92233720368547758.07e2", raw(b'"vsn":1}', b'"vsn":92233720368547758.07e2}')),
        ("vsn 2^63-1 as 0.9223372036854775807e19", raw(b'"vsn":1}', b'"vsn":0.9223372036854775807e19}')),
        ("vsn 2^63 as 9223372036854775808", raw(b'"vsn":1}', b'"vsn":9223372036854775808}')),
        ("vsn 2^63 as 9223372036854775808.0", raw(b'"vsn":1}', b'"vsn":9223372036854775808.0}')),
        ("vsn 2^64", raw(b'"vsn":1}', b'"vsn":18446744073709551616}')),
        ("vsn 40 digits", raw(b'"vsn":1}', b'"vsn":' + b"9" * 40 + b"}")),
        ("vsn 1 with 1000 fraction zeros", raw(b'"vsn":1}', b'"vsn":1.' + b"0" * 1000 + b"}")),
        ("vsn -0", raw(b'"vsn":1}', b'"vsn":-0}')),
        ("vsn -0.0e-5", raw(b'"vsn":1}', b'"vsn":-0.0e-5}')),
        ("vsn -1e0", raw(b'"vsn":1}', b'"vsn":-1e0}')),
        ("vsn 1e999999999", raw(b'"vsn":1}', b'"vsn":1e999999999}')),
        ("vsn 1e99999999999999999999", raw(b'"vsn":1}', b'"vsn":1e99999999999999999999}')),
        ("vsn 1e-999999999", raw(b'"vsn":1}', b'"vsn":1e-999999999}')),
        ("vsn 0e999999999", raw(b'"vsn":1}', b'"vsn":0e999999999}')),
        ("vsn 1e+00000000000000000000001", raw(b'"vsn":1}', b'"vsn":1e+00000000000000000000001}')),
        ("vsn 01", raw(b'"vsn":1}', b'"vsn":01}')),
        ("vsn 1.", raw(b'"vsn":1}', b'"vsn":1.}')),
        ("vsn .5", raw(b'"vsn":1}', b'"vsn":.5}')),
        ("vsn +1", raw(b'"vsn":1}', b'"vsn":+1}')),
        ("vsn 1e", raw(b'"vsn":1}', b'"vsn":1e}')),
        ("vsn Infinity", raw(b'"vsn":1}', b'"vsn":Infinity}')),
        ("length 190e-1", raw(b'"length":19', b'"length":190e-1')),
        ("length 19.000", raw(b'"length":19', b'"length":19.000')),
        ("length 19.5", raw(b'"length":19', b'"length":19.5')),
        ("origin pid 7.0", raw(b'"pid":7', b'"pid":7.0')),
        ("origin pid -0", raw(b'"pid":7', b'"pid":-0')),
        ("origin pid -2^31", raw(b'"pid":7', b'"pid":-2147483648')),
        ("origin pid 2^31-1 as 2.147483647e9", raw(b'"pid":7', b'"pid":2.147483647e9')),
        ("origin pid 2^31", raw(b'"pid":7', b'"pid":2147483648')),
        ("origin pid -2^31-1", raw(b'"pid":7', b'"pid":-2147483649')),
        ("origin pid 7.5", raw(b'"pid":7', b'"pid":7.5')),
        ("unknown key 1e999999999", raw(b'"vsn":1}', b'"vsn":1,"x":1e999999999}')),
        # Repeated keys (§4: malformed, at any depth), except that a single `format` naming another format wins.
        ("duplicate key inside origin", raw(b'"pid":7', b'"pid":7,"pid":7')),
        ("duplicate origin.instance", raw(b'"instance":"corpus-writer"', b'"instance":"corpus-writer","instance":"corpus-writer"')),
        ("duplicate unknown key, same value", raw(b'"vsn":1}', b'"vsn":1,"zz":1,"zz":1}')),
        ("duplicate key in an unknown key's object", raw(b'"vsn":1}', b'"vsn":1,"x":[{"a":1,"a":2}]}')),
        ("duplicate key, same value", raw(b'"vsn":1}', b'"vsn":1,"vsn":1}')),
        ("duplicate format", raw(b'"format":"swift-handoff/1"', b'"format":"swift-handoff/1","format":"swift-handoff/1"')),
        ("duplicate format, one newer", raw(b'"format":"swift-handoff/1"', b'"format":"swift-handoff/2","format":"swift-handoff/1"')),
        ("format newer, a key repeated", raw(b'"format":"swift-handoff/1"', b'"format":"swift-handoff/2","id":"x"')),
        ("same key in two objects", raw(b'"vsn":1}', b'"vsn":1,"x":{"vsn":1}}')),
        # Strings: all escapes; an unpaired surrogate escape is not valid Unicode (§4: malformed).
        ("escapes in a string", raw(b'"host":"h"', b'"host":"\\\"\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC"'.replace(b"\\\\", b"\\"))),
        ("surrogate pair in a string", raw(b'"host":"h"', b'"host":"\\ud83d\\ude00"'.replace(b"\\\\", b"\\"))),
        ("surrogate pair in upper case", raw(b'"host":"h"', b'"host":"\\uD83D\\uDE00"'.replace(b"\\\\", b"\\"))),
        ("unpaired high surrogate in origin.host", raw(b'"host":"h"', b'"host":"\\ud800"'.replace(b"\\\\", b"\\"))),
        ("unpaired low surrogate in origin.host", raw(b'"host":"h"', b'"host":"a\\udc00b"'.replace(b"\\\\", b"\\"))),
        ("high surrogate then a letter", raw(b'"host":"h"', b'"host":"\\ud800x"'.replace(b"\\\\", b"\\"))),
        ("two high surrogates then a low one", raw(b'"host":"h"', b'"host":"\\ud800\\ud83d\\ude00"'.replace(b"\\\\", b"\\"))),
        ("reversed surrogate pair", raw(b'"host":"h"', b'"host":"\\ude00\\ud83d"'.replace(b"\\\\", b"\\"))),
        ("unpaired surrogate in an unknown key's value", raw(b'"vsn":1}', b'"vsn":1,"x":["\\udfff"]}'.replace(b"\\\\", b"\\"))),
        ("unpaired surrogate in a key", raw(b'"vsn":1}', b'"vsn":1,"\\ud800":1}'.replace(b"\\\\", b"\\"))),
        ("format newer, unpaired surrogate elsewhere", raw(b'"format":"swift-handoff/1","id":"corpus-id"', b'"format":"swift-handoff/2","id":"\\ud800"'.replace(b"\\\\", b"\\"))),
        ("format with an unpaired surrogate", raw(b'"format":"swift-handoff/1"', b'"format":"swift-handoff/2\\ud800"'.replace(b"\\\\", b"\\"))),
        ("invalid escape", raw(b'"host":"h"', b'"host":"\\x41"'.replace(b"\\\\", b"\\"))),
        ("short unicode escape", raw(b'"host":"h"', b'"host":"\\u12"'.replace(b"\\\\", b"\\"))),
        ("raw tab in a string", raw(b'"host":"h"', b'"host":"a\tb"')),
        ("raw DEL in a string", raw(b'"host":"h"', b'"host":"a\x7fb"')),
        ("overlong UTF-8 in a string", raw(b'"host":"h"', b'"host":"\xc0\xaf"')),
        ("UTF-8 encoded surrogate in a string", raw(b'"host":"h"', b'"host":"\xed\xa0\x80"')),
        ("4-byte UTF-8 in a string", raw(b'"host":"h"', "\"host\":\"\U0001F600\"".encode())),
        ("UTF-8 beyond U+10FFFF", raw(b'"host":"h"', b'"host":"\xf4\x90\x80\x80"')),
        # Other JSON
        ("trailing comma", raw(b'"vsn":1}', b'"vsn":1,}')),
        ("bytes after the header object", raw(b'"vsn":1}', b'"vsn":1} x')),
        ("two header objects", raw(b'"vsn":1}', b'"vsn":1}{}')),
        ("true, false and null in unknown keys", raw(b'"vsn":1}', b'"vsn":1,"a":true,"b":false,"c":[null,{}]}')),
        ("truex in an unknown key", raw(b'"vsn":1}', b'"vsn":1,"a":truex}')),
        ("unknown key nested to 64 levels", nested(63)),
        ("unknown key nested to 65 levels", nested(64)),
        ("unknown key nested to 5000 levels", nested(4999)),
        ("format newer, nested to 65 levels", nested(64).replace(b"swift-handoff/1", b"swift-handoff/2")),
        # `incarnation` (§4, §9.2): a checkpoint's key, meaningless on a handoff.
        ("incarnation 1 on a handoff", raw(b'"vsn":1}', b'"vsn":1,"incarnation":1}')),
        ("incarnation null on a handoff", raw(b'"vsn":1}', b'"vsn":1,"incarnation":null}')),
        ("incarnation 0 on a handoff", raw(b'"vsn":1}', b'"vsn":1,"incarnation":0}')),
        ("incarnation string on a handoff", raw(b'"vsn":1}', b'"vsn":1,"incarnation":"1"}')),
        ("incarnation 1.5 on a handoff", raw(b'"vsn":1}', b'"vsn":1,"incarnation":1.5}')),
    ]
    exact = header(pad="")
    exact["pad"] = "x" * (MAX_HEADER_BYTES - len(encode_header(exact)))
    cases = [(n, build(exact) if n == "header exactly 65536 bytes" else p) for n, p in cases]
    corpus = [(name, label, "corpus-id", payload) for name, payload in cases]
    # A topic whose {id} level is not a valid id cannot match the header's id (§3): label-mismatch, but a header
    # that names that invalid id is malformed (check 5 comes before check 8).
    corpus.append(("topic id level not a valid id", label, "bad id!", build(header())))
    corpus.append(("topic id level not a valid id, header the same", label, "bad id!", build(header(id="bad id!"))))
    example = document_example()
    if example:
        corpus.append(("the example of docs/PROTOCOL.md §4", "counter", example[0], example[1]))
    return corpus


def document_example() -> Optional[tuple[str, bytes]]:
    """(id, payload) of the example envelope in docs/PROTOCOL.md §4, if the document is next to this script."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "PROTOCOL.md")
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError:
        return None
    match = re.search(r"^Example \(a counter.*?\n```\n(\{.*?\})\n(.*?)\n```", text, re.MULTILINE | re.DOTALL)
    if not match:
        return None
    header_line, data_line = match.group(1), match.group(2)
    return json.loads(header_line)["id"], (header_line + "\n" + data_line).encode("utf-8")


_DROP = object()


def classify(payload: bytes, topic_label: str, topic_id: str) -> str:
    """"ok" or the §7 reason this reader gives the payload."""
    try:
        decode_envelope(payload, topic_label, topic_id)
        return "ok"
    except Rejection as rejection:
        return rejection.reason


# ---------------------------------------------------------------------------------------------------------------
# Test vectors of §10 (shared with the Swift tests)

VECTORS_FORMAT = "swift-handoff-signing-vectors/1"
VECTORS_DESCRIPTION = (
    "Test vectors for docs/PROTOCOL.md §10 (signed and encrypted envelopes, signed claims), generated by "
    "`interop/python/handoff_client.py signing-vectors --out FILE` and checked by `... verify-vectors FILE`. "
    "Byte strings are base64 (standard alphabet, padded) where named payload/data/secret, hex (lower case) where named "
    "macKey/aesKey/mac/cmac/nonce/okm; signedText and claimText are the exact UTF-8 texts (each line ends with \\n). "
    "keys: every key used, with its HKDF-SHA256 subkeys (§10.1). hkdf: RFC 5869 test case 1, to check the HKDF itself. "
    "readerKeyFile: a key file (§10.1 format) whose key set (readerKeys, the first one writes) reads every case; the key "
    "'k9' of keys is NOT in it. keyFiles: key files with the key ids they must give (ok true, the first id writes) or "
    "that must be refused (ok false). envelopes: a writer signing with key `key` (and encrypting with `nonce` when it "
    "is not null) turns the header fields (id, label, vsn, createdAt, origin, contentType, incarnation: null = absent) "
    "and data into exactly `payload` (header keys sorted, compact JSON, as swift-handoff and this client write it); "
    "signedText/mac are §10.2's; a keyed reader with readerKeys accepts payload on the topic (topicLabel, topicId; with "
    "checkpoint true a checkpoint topic whose topicId is the writer's instance, §9.2) and gets data back. claims: "
    "claimText and cmac of §10.5 for (topic, claimBy, purpose: null = the property absent, roundMac) under key `key`; "
    "`property` is the handoff-claim-signature value sent (some are tampered: then cmac is still the right one); `verifies` "
    "says whether a keyed participant with readerKeys takes a claim with that property as a claim of the round whose "
    "signature.mac is verifyRoundMac. negatives: payloads with the verdict a keyed reader with "
    "readerKeys gives (`verdict`: ok or a §7 reason code) and the one an unkeyed reader gives (`unkeyedVerdict`)."
)
_VECTOR_KEYS = [
    ("k1", bytes(range(32))),
    ("rotation.k-2", bytes(range(100, 140))),
    ("k9", b"\xff" * 32),
]
_VECTOR_READER_FILE = (
    "# the key set of the test vectors: k1 writes, rotation.k-2 only reads\n\n"
    f"k1 {base64.b64encode(_VECTOR_KEYS[0][1]).decode()}\n"
    f"   rotation.k-2\t{base64.b64encode(_VECTOR_KEYS[1][1]).decode()}  \n"
)


def _vector_key_sets() -> tuple[dict[str, KeySet], KeySet]:
    """A key set per vector key (that key writing), and the readers' key set."""
    writers = {key_id: KeySet([Key(key_id, secret)]) for key_id, secret in _VECTOR_KEYS}
    return writers, parse_key_file(_VECTOR_READER_FILE)


def _sign_header(header: dict[str, Any], keys: KeySet) -> bytes:
    """The payload header of `header` signed with the writing key of `keys` (whatever its `encryption` says)."""
    header = dict(header)
    header["signature"] = {"alg": SIGNATURE_ALG, "key": keys.writer.id}
    header["signature"]["mac"] = hmac.new(keys.mac_key(keys.writer.id), signed_text(header), hashlib.sha256).hexdigest()
    return encode_header(header)


def classify_keyed(payload: bytes, label: str, topic_id: str, checkpoint: bool, keys: Optional[KeySet]) -> str:
    try:
        decode_envelope(payload, label, topic_id, checkpoint=checkpoint, keys=keys)
        return "ok"
    except Rejection as rejection:
        return rejection.reason


def _envelope_cases() -> list[dict[str, Any]]:
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return [
        {"name": "handoff with origin host and pid", "key": "k1", "nonce": None, "checkpoint": False,
         "id": "0f8fad5b-d9cb-469f-a165-70867728950e", "label": "counter", "vsn": 2, "createdAt": "2026-11-25T06:00:00.123Z",
         "origin": {"instance": "c0a8e1f2-4b3d-4e5f-8a9b-0c1d2e3f4a5b", "host": "pod-7", "pid": 41},
         "contentType": "application/json", "incarnation": None, "data": b64(b'{"count":42,"total":99}')},
        {"name": "handoff without host and pid, signed with a read-only key, empty data", "key": "rotation.k-2",
         "nonce": None, "checkpoint": False, "id": "a", "label": "counter", "vsn": 0, "createdAt": "2026-11-25T06:00:00Z",
         "origin": {"instance": "writer-2"}, "contentType": "application/octet-stream", "incarnation": None, "data": ""},
        {"name": "checkpoint with incarnation and a negative pid", "key": "k1", "nonce": None, "checkpoint": True,
         "id": "5b1d3c6e-0000-4000-8000-000000000003", "label": "counter", "vsn": 1, "createdAt": "2026-11-25T06:00:01.500Z",
         "origin": {"instance": "writer-3", "host": "h", "pid": -12}, "contentType": "application/json",
         "incarnation": 7, "data": b64(b'{"count":7}')},
        {"name": "non-ASCII label, contentType with parameters, vsn 2^63-1", "key": "k1", "nonce": None, "checkpoint": False,
         "id": "id_with-chars", "label": "é/x", "vsn": INT64_MAX, "createdAt": "2026-11-25T08:00:00.123+02:00",
         "origin": {"instance": "wrïter", "host": "hôte"}, "contentType": "application/json; charset=utf-8",
         "incarnation": None, "data": b64('{"text":"héllo 🎉"}'.encode())},
        {"name": "encrypted handoff (fixed nonce)", "key": "k1", "nonce": "000102030405060708090a0b", "checkpoint": False,
         "id": "e1", "label": "secret", "vsn": 1, "createdAt": "2026-11-25T06:00:00.123Z",
         "origin": {"instance": "writer-5", "host": "pod-5", "pid": 5}, "contentType": "application/json",
         "incarnation": None, "data": b64(b'{"pin":1234}')},
        {"name": "encrypted checkpoint with the read-only key (fixed nonce)", "key": "rotation.k-2",
         "nonce": "ffeeddccbbaa998877665544", "checkpoint": True, "id": "e2", "label": "counter", "vsn": 3,
         "createdAt": "2026-11-25T06:00:00.123Z", "origin": {"instance": "writer-6"}, "contentType": "application/json",
         "incarnation": 2, "data": b64(b'{"count":1}')},
    ]


def _seal_case(case: dict[str, Any], writers: dict[str, KeySet]) -> tuple[bytes, str, bytes]:
    """(payload, mac, signed text) of an envelope case."""
    origin = {k: v for k, v in case["origin"].items()}
    envelope = Envelope(
        case["id"], case["label"], case["vsn"], case["createdAt"], origin, case["contentType"],
        base64.b64decode(case["data"]), case["incarnation"],
    )
    nonce = bytes.fromhex(case["nonce"]) if case["nonce"] else None
    payload, mac = seal(envelope, writers[case["key"]], encrypt=nonce is not None, nonce=nonce)
    header = json.loads(payload[: payload.index(b"\n")])
    return payload, mac, signed_text(header)


def _topic_of(case: dict[str, Any]) -> tuple[str, str]:
    return case["label"], (case["origin"]["instance"] if case["checkpoint"] else case["id"])


def signing_vectors() -> dict[str, Any]:
    writers, reader = _vector_key_sets()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    envelopes = []
    sealed: dict[str, tuple[bytes, str]] = {}
    for case in _envelope_cases():
        payload, mac, text = _seal_case(case, writers)
        label, topic_id = _topic_of(case)
        sealed[case["name"]] = (payload, mac)
        envelopes.append({**case, "topicLabel": label, "topicId": topic_id, "signedText": text.decode("utf-8"),
                          "mac": mac, "payload": b64(payload), "verdict": classify_keyed(payload, label, topic_id, case["checkpoint"], reader)})
    first_payload, first_mac = sealed["handoff with origin host and pid"]
    encrypted_payload, _ = sealed["encrypted handoff (fixed nonce)"]
    handoff_topic = "handoff/handoffs/counter/0f8fad5b-d9cb-469f-a165-70867728950e"

    # -- claims
    claims = []

    def claim(name: str, key_id: str, topic: str, claim_by: str, purpose: Optional[str], round_mac: str,
              tamper: Optional[Callable[[str], str]] = None, verify_mac: Optional[str] = None) -> None:
        prop = writers[key_id].claim_signature(topic, claim_by, purpose, round_mac)
        if tamper:
            prop = tamper(prop)
        entry = {"name": name, "key": key_id, "topic": topic, "claimBy": claim_by, "purpose": purpose,
                 "roundMac": round_mac, "claimText": claim_text(topic, claim_by, purpose, round_mac).decode("utf-8"),
                 "cmac": prop.rsplit(":", 1)[1] if not tamper else writers[key_id].claim_signature(topic, claim_by, purpose, round_mac).rsplit(":", 1)[1],
                 "property": prop}
        check_mac = round_mac if verify_mac is None else verify_mac
        entry["verifyRoundMac"] = check_mac
        entry["verifies"] = reader.claim_verifies(prop, topic, claim_by, purpose, check_mac)
        claims.append(entry)

    claim("merge claim", "k1", handoff_topic, "s1", "merge", first_mac)
    claim("claim without a purpose property", "k1", handoff_topic, "7c0b1e2a-successor", None, first_mac)
    claim("dead-letter claim of an unsigned round (round mac empty), read-only key", "rotation.k-2",
          "handoff/handoffs/counter/forged-1", "s2", "dead-letter", "")
    claim("already-merged claim on a checkpoint topic with an encoded label", "k1",
          "handoff/checkpoints/%C3%A9%2Fx/writer-3", "writer-3", "already-merged", "ab" * 32)
    claim("upper-case CMAC (compared case-insensitively)", "k1", handoff_topic, "s1", "merge", first_mac,
          tamper=lambda p: p[: p.rindex(":") + 1] + p[p.rindex(":") + 1 :].upper())
    claim("copied to another round (verified against another round mac)", "k1", handoff_topic, "s1", "merge", first_mac,
          verify_mac="cd" * 32)
    claim("signed with a key not in the reader's set", "k9", handoff_topic, "s1", "merge", first_mac)
    claim("another algorithm name", "k1", handoff_topic, "s1", "merge", first_mac,
          tamper=lambda p: p.replace("hmac-sha256:", "hmac-sha512:", 1))
    claim("wrong CMAC", "k1", handoff_topic, "s1", "merge", first_mac,
          tamper=lambda p: p[:-1] + ("0" if p[-1] != "0" else "1"))

    # -- negative payloads
    negatives = []

    def negative(name: str, payload: bytes, label: str = "counter", topic_id: str = "0f8fad5b-d9cb-469f-a165-70867728950e",
                 checkpoint: bool = False) -> None:
        negatives.append({"name": name, "topicLabel": label, "topicId": topic_id, "checkpoint": checkpoint,
                          "payload": b64(payload), "verdict": classify_keyed(payload, label, topic_id, checkpoint, reader),
                          "unkeyedVerdict": classify_keyed(payload, label, topic_id, checkpoint, None)})

    newline = first_payload.index(b"\n")
    first_header = json.loads(first_payload[:newline])
    first_data = first_payload[newline + 1 :]

    def with_header(changes: dict[str, Any], data: bytes = first_data, sign: Optional[str] = None,
                    base: Optional[dict[str, Any]] = None) -> bytes:
        header = dict(base if base is not None else first_header)
        header.update(changes)
        header = {k: v for k, v in header.items() if v is not _DROP}
        if sign:
            header.pop("signature", None)
            return _sign_header(header, writers[sign]) + b"\n" + data
        return encode_header(header) + b"\n" + data

    negative("unsigned", with_header({"signature": _DROP}))
    negative("signature null", with_header({"signature": None}))
    negative("signature not an object", with_header({"signature": first_mac}))
    negative("wrong mac (last digit changed)",
             with_header({"signature": {**first_header["signature"], "mac": first_mac[:-1] + ("0" if first_mac[-1] != "0" else "1")}}))
    negative("mac in upper case (accepted)", with_header({"signature": {**first_header["signature"], "mac": first_mac.upper()}}))
    negative("mac missing", with_header({"signature": {"alg": SIGNATURE_ALG, "key": "k1"}}))
    negative("signature alg hmac-sha512", with_header({"signature": {**first_header["signature"], "alg": "hmac-sha512"}}))
    negative("signature key not a key id", with_header({"signature": {**first_header["signature"], "key": "k 1"}}))
    negative("signature with an unknown member (ignored)", with_header({"signature": {**first_header["signature"], "x": 1}}))
    negative("unknown key id k9", with_header({}, sign="k9"))
    negative("vsn changed after signing", with_header({"vsn": 3}))
    negative("origin.host removed after signing", with_header({"origin": {"instance": first_header["origin"]["instance"], "pid": 41}}))
    negative("incarnation added after signing", with_header({"incarnation": 1}))
    negative("encryption null (absent), signed", with_header({"encryption": None}))
    negative("label mismatch beats the signature (check 8 first)", with_header({"signature": _DROP}), label="other")
    # encrypted ones
    enc_newline = encrypted_payload.index(b"\n")
    enc_header = json.loads(encrypted_payload[:enc_newline])
    enc_data = encrypted_payload[enc_newline + 1 :]
    flipped = bytes([enc_data[0] ^ 1]) + enc_data[1:]
    flipped_sha = {"sha256": hashlib.sha256(flipped).hexdigest()}
    enc = lambda changes, data=enc_data, sign=None: with_header(changes, data, sign, enc_header)  # noqa: E731
    negative("encrypted, ciphertext tampered, sha256 updated", enc(flipped_sha, flipped), label="secret", topic_id="e1")
    negative("encrypted, ciphertext tampered, sha256 left", enc({}, flipped), label="secret", topic_id="e1")
    negative("encrypted, ciphertext tampered, sha256 updated and re-signed (tag fails)", enc(flipped_sha, flipped, "k1"),
             label="secret", topic_id="e1")
    negative("encryption alg aes-128-gcm, signed correctly",
             enc({"encryption": {**enc_header["encryption"], "alg": "aes-128-gcm"}}, sign="k1"), label="secret", topic_id="e1")
    negative("encryption nonce of 22 digits, signed correctly",
             enc({"encryption": {**enc_header["encryption"], "nonce": enc_header["encryption"]["nonce"][:22]}}, sign="k1"),
             label="secret", topic_id="e1")
    negative("encryption nonce in upper case, signed correctly (accepted)",
             enc({"encryption": {**enc_header["encryption"], "nonce": enc_header["encryption"]["nonce"].upper()}}, sign="k1"),
             label="secret", topic_id="e1")
    negative("encryption not an object, signed correctly", enc({"encryption": "aes-256-gcm"}, sign="k1"),
             label="secret", topic_id="e1")
    negative("encryption key k9 (unknown), signed correctly with k1",
             enc({"encryption": {**enc_header["encryption"], "key": "k9"}}, sign="k1"), label="secret", topic_id="e1")
    negative("encrypted, unsigned", enc({"signature": _DROP}), label="secret", topic_id="e1")
    negative("encrypted with the tag cut off, sha256 and length updated, re-signed",
             enc({"sha256": hashlib.sha256(enc_data[:-16]).hexdigest(), "length": len(enc_data) - 16}, enc_data[:-16], "k1"),
             label="secret", topic_id="e1")

    key_files = [
        {"name": "reader key file", "text": _VECTOR_READER_FILE, "ok": True, "ids": reader.ids},
        {"name": "CRLF line ends and a comment after blanks", "text": "  # comment\r\n\r\nk1 " + b64(_VECTOR_KEYS[0][1]) + "\r\n",
         "ok": True, "ids": ["k1"]},
        {"name": "secret of 31 bytes", "text": "k1 " + b64(bytes(31)) + "\n", "ok": False},
        {"name": "secret not base64", "text": "k1 not*base64!\n", "ok": False},
        {"name": "key id with a colon", "text": "k:1 " + b64(bytes(32)) + "\n", "ok": False},
        {"name": "key id of 65 characters", "text": "k" * 65 + " " + b64(bytes(32)) + "\n", "ok": False},
        {"name": "three fields", "text": "k1 " + b64(bytes(32)) + " extra\n", "ok": False},
        {"name": "no key", "text": "# nothing\n\n", "ok": False},
        {"name": "the same id twice", "text": "k1 " + b64(bytes(32)) + "\nk1 " + b64(bytes(range(32))) + "\n", "ok": False},
    ]
    return {
        "description": VECTORS_DESCRIPTION,
        "format": VECTORS_FORMAT,
        "hkdf": {"name": "RFC 5869 test case 1", "ikm": "0b" * 22, "salt": "000102030405060708090a0b0c",
                 "info": "f0f1f2f3f4f5f6f7f8f9", "length": 42,
                 "okm": hkdf_sha256(bytes.fromhex("0b" * 22), bytes.fromhex("000102030405060708090a0b0c"),
                                    bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), 42).hex()},
        "keys": [{"id": key_id, "secret": b64(secret), "macKey": Key(key_id, secret).mac_key.hex(),
                  "aesKey": Key(key_id, secret).aes_key.hex()} for key_id, secret in _VECTOR_KEYS],
        "readerKeyFile": _VECTOR_READER_FILE,
        "readerKeys": reader.ids,
        "keyFiles": key_files,
        "envelopes": envelopes,
        "claims": claims,
        "negatives": negatives,
    }


def verify_vectors(vectors: dict[str, Any]) -> list[str]:
    """The failures of this implementation against a vectors file (empty: all pass); prints one line per check."""
    failures: list[str] = []
    passed = 0

    def check(name: str, ok: bool, detail: str = "") -> None:
        nonlocal passed
        if ok:
            passed += 1
        else:
            failures.append(f"{name}: {detail}")
            print(f"FAIL {name}: {detail}", file=sys.stderr)

    check("format", vectors.get("format") == VECTORS_FORMAT, repr(vectors.get("format")))
    h = vectors["hkdf"]
    okm = hkdf_sha256(bytes.fromhex(h["ikm"]), bytes.fromhex(h["salt"]), bytes.fromhex(h["info"]), h["length"]).hex()
    check("hkdf " + h["name"], okm == h["okm"], okm)
    writers: dict[str, KeySet] = {}
    for entry in vectors["keys"]:
        key = Key(entry["id"], base64.b64decode(entry["secret"]))
        writers[key.id] = KeySet([key])
        check(f"key {key.id} macKey", key.mac_key.hex() == entry["macKey"])
        check(f"key {key.id} aesKey", key.aes_key.hex() == entry["aesKey"])
    reader = parse_key_file(vectors["readerKeyFile"])
    check("readerKeys", reader.ids == vectors["readerKeys"], repr(reader.ids))
    for entry in vectors["keyFiles"]:
        try:
            ids: Optional[list[str]] = parse_key_file(entry["text"]).ids
        except ValueError:
            ids = None
        check(f"key file {entry['name']}", (ids is not None) == entry["ok"] and (not entry["ok"] or ids == entry["ids"]), repr(ids))
    for case in vectors["envelopes"]:
        payload, mac, text = _seal_case(case, writers)
        name = f"envelope {case['name']}"
        check(name + " signedText", text.decode("utf-8") == case["signedText"], repr(text))
        check(name + " mac", mac == case["mac"], mac)
        check(name + " payload", base64.b64encode(payload).decode() == case["payload"])
        stored = base64.b64decode(case["payload"])
        try:
            envelope = decode_envelope(stored, case["topicLabel"], case["topicId"], checkpoint=case["checkpoint"], keys=reader)
            check(name + " read", envelope.data == base64.b64decode(case["data"]) and envelope.mac == case["mac"])
        except Rejection as rejection:
            check(name + " read", False, str(rejection))
    for entry in vectors["claims"]:
        name = f"claim {entry['name']}"
        text = claim_text(entry["topic"], entry["claimBy"], entry["purpose"], entry["roundMac"])
        check(name + " claimText", text.decode("utf-8") == entry["claimText"], repr(text))
        cmac = hmac.new(writers[entry["key"]].mac_key(entry["key"]), text, hashlib.sha256).hexdigest()
        check(name + " cmac", cmac == entry["cmac"], cmac)
        verifies = reader.claim_verifies(entry["property"], entry["topic"], entry["claimBy"], entry["purpose"], entry["verifyRoundMac"])
        check(name + " verifies", verifies == entry["verifies"], repr(verifies))
    for entry in vectors["negatives"]:
        payload = base64.b64decode(entry["payload"])
        verdict = classify_keyed(payload, entry["topicLabel"], entry["topicId"], entry["checkpoint"], reader)
        check(f"negative {entry['name']}", verdict == entry["verdict"], verdict)
        unkeyed = classify_keyed(payload, entry["topicLabel"], entry["topicId"], entry["checkpoint"], None)
        check(f"negative {entry['name']} (unkeyed)", unkeyed == entry["unkeyedVerdict"], unkeyed)
    print(f"vectors: {passed} passed, {len(failures)} failed")
    return failures


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="handoff")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds for each acknowledgement")
    parser.add_argument(
        "--keys", metavar="FILE",
        help="a key file (§10.1: lines `KEYID BASE64SECRET`, the first key writes): the participant is keyed (§10)",
    )
    parser.add_argument("--encrypt", action="store_true", help="with --keys: encrypt the data it writes (AES-256-GCM, §10.3)")


def _keys(args: argparse.Namespace) -> Optional[KeySet]:
    """The key set of --keys, or None; exits with a clear error for a bad key file."""
    if getattr(args, "encrypt", False) and not getattr(args, "keys", None):
        raise SystemExit("error: --encrypt needs --keys")
    if not getattr(args, "keys", None):
        return None
    try:
        return load_key_file(args.keys)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


def _participant(args: argparse.Namespace) -> Participant:
    return Participant(
        args.host, args.port, args.prefix, timeout=args.timeout, keys=_keys(args), encrypt=args.encrypt
    ).connect()


def _write_json(path: Optional[str], value: Any) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    if path:
        temporary = f"{path}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)  # readers never see a half-written file
    else:
        print(text)


def command_initiate(args: argparse.Namespace) -> int:
    """Hands off `--count` states; `{i}` in `--data` is replaced by the state's index."""
    participant = _participant(args)
    try:
        envelopes = []
        for index in range(args.count):
            text = args.data.replace("{i}", str(args.start + index))
            json.loads(text)  # the data must be JSON: it is sent as application/json
            envelopes.append(participant.make_envelope(args.label, args.vsn, text.encode("utf-8")))
        participant.initiate(envelopes)
        _write_json(
            args.out,
            {
                "instance": participant.instance,
                "handoffs": [
                    {
                        "id": e.id,
                        "label": e.label,
                        "topic": participant.topics.handoff(e.label, e.id),
                        "sha256": e.sha256,
                        "data": json.loads(e.data),
                        **({"mac": e.mac} if e.mac else {}),
                    }
                    for e in envelopes
                ],
            },
        )
    finally:
        participant.close()
    return 0


def _wait_for_file(path: str, deadline: float) -> bool:
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class CheckpointWriter:
    """Keeps the checkpoints of one label (§9.2) on a participant that connected with a Will (§9.1)."""

    def __init__(self, participant: Participant, label: str, vsn: int) -> None:
        assert participant.will_delay is not None, "a participant that keeps checkpoints needs a Will (§9.1)"
        self.participant = participant
        self.label = label
        self.vsn = vsn
        self.topic = participant.topics.checkpoint(label, participant.instance)
        self.written: list[Envelope] = []
        self.births: list[InstanceStatus] = []
        self.fenced_because: Optional[str] = None
        self._subscribed = False

    def ensure_born(self) -> None:
        """After each CONNECT, the birth comes before any checkpoint (§9.1)."""
        participant = self.participant
        participant._wait(lambda: participant._connected, "the connection")
        if participant.born_incarnation != participant.incarnation:
            self.births.append(participant.announce())
        if not self._subscribed:
            # Claims by others on our checkpoint topic fence us (§9.5); our own writes come back too (No Local 0).
            participant.subscribe(self.topic)
            participant.sync()
            self._subscribed = True

    def check_fenced(self) -> bool:
        """§9.5: fenced once a status released our last checkpoint's incarnation, or another instance claimed it."""
        if self.fenced_because is not None:
            return True
        participant = self.participant
        released = participant.released_through(participant.instance)
        last = self.written[-1].incarnation if self.written else None
        if last is not None and last <= released:
            self.fenced_because = f"our status released incarnation {released}, our last checkpoint is of {last}"
        for round_ in participant.take_decided_rounds():
            if round_.topic == self.topic and round_.verdict != participant.instance:
                self.fenced_because = f"{round_.verdict} claimed our checkpoint ({round_.verdict_purpose})"
        if self.fenced_because is not None:
            print(f"error: fenced for {self.label!r}: {self.fenced_because}", file=sys.stderr)
        return self.fenced_because is not None

    def write(self, data: bytes) -> Optional[Envelope]:
        """Publishes a checkpoint (retained, QoS 1, a new id, this connection's incarnation) and waits for its
        PUBACK; None if fenced."""
        self.ensure_born()
        if self.check_fenced():
            return None
        participant = self.participant
        envelope = participant.make_envelope(self.label, self.vsn, data)
        envelope.incarnation = participant.born_incarnation
        if not envelope.incarnation:
            raise ProtocolError("disconnected before the checkpoint: not written (a late write, §9.2)")
        participant.publish(self.topic, participant.encode(envelope), retain=True, content_type=ENVELOPE_CONTENT_TYPE)
        self.written.append(envelope)
        return envelope

    def hand_off(self, data: bytes) -> Envelope:
        """§9.6 then §9.1 "Graceful shutdown": the handoff, then our checkpoint removed by our own `already-merged`
        claim, then our status removed (no checkpoint is left)."""
        participant = self.participant
        envelope = participant.make_envelope(self.label, self.vsn, data)
        participant.initiate([envelope])
        last_mac = (self.written[-1].mac or "") if self.written else ""
        claim = participant.claim_properties(self.topic, PURPOSE_ALREADY_MERGED, last_mac)
        participant.publish(self.topic, b"", retain=True, user=claim)
        participant.publish(participant.topics.status(participant.instance), b"", retain=True)
        return envelope

    def release(self) -> InstanceStatus:
        """§9.1 "Graceful shutdown" with checkpoints left: publishes our own death notice (releasing them)."""
        participant = self.participant
        notice = InstanceStatus(participant.instance, participant.incarnation, "dead", participant.incarnation)
        participant.publish(
            participant.topics.status(participant.instance), notice.encode(), retain=True, content_type="application/json"
        )
        return notice


def _checkpoint_json(participant: Participant, envelope: Envelope) -> dict[str, Any]:
    return {
        "id": envelope.id,
        "label": envelope.label,
        "topic": participant.topics.checkpoint(envelope.label, participant.instance),
        "incarnation": envelope.incarnation,
        "sha256": envelope.sha256,
        "data": json.loads(envelope.data),
        **({"mac": envelope.mac} if envelope.mac else {}),
    }


def command_checkpoint(args: argparse.Namespace) -> int:
    """§9: connects with a Will, publishes its birth, writes checkpoints of a label, then ends as told: `crash`
    (the process exits without DISCONNECT, so the broker publishes the Will after its delay), `release` (publishes
    its own death notice, then disconnects) or `handoff` (hands the last state off and removes its checkpoint)."""
    participant = Participant(
        args.host, args.port, args.prefix, timeout=args.timeout, will_delay=args.will_delay,
        session_expiry=max(300, args.will_delay), keys=_keys(args), encrypt=args.encrypt,
    ).connect()
    writer = CheckpointWriter(participant, args.label, args.vsn)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(args.heartbeat):
            participant.heartbeat()

    if args.heartbeat > 0:
        threading.Thread(target=beat, daemon=True).start()

    def state(index: int) -> bytes:
        text = args.data.replace("{i}", str(args.start + index))
        json.loads(text)  # the data must be JSON: it is sent as application/json
        return text.encode("utf-8")

    def summary() -> dict[str, Any]:
        return {
            "instance": participant.instance,
            "incarnation": participant.incarnation,
            "births": [json.loads(birth.encode()) for birth in writer.births],
            "fenced": writer.fenced_because,
            "checkpoints": [_checkpoint_json(participant, e) for e in writer.written],
        }

    index = 0
    while index < args.count or (args.until_file and not os.path.exists(args.until_file)):
        if index > 0 and args.interval > 0:
            time.sleep(args.interval / 1000)
        if writer.write(state(index)) is None:
            break
        index += 1
    if args.ready_file:
        _write_json(args.ready_file, summary())
    if args.end_file and not _wait_for_file(args.end_file, time.monotonic() + args.deadline):
        print(f"error: {args.end_file} did not appear in time", file=sys.stderr)
        return 2
    result = summary()
    if args.end == "crash":
        _write_json(args.out, result)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # no DISCONNECT: the kernel closes the socket, the broker sends the Will after its delay
    stop.set()
    if writer.fenced_because is None and args.end == "handoff" and writer.written:
        handoff = writer.hand_off(writer.written[-1].data)
        result["handoff"] = {"id": handoff.id, "topic": participant.topics.handoff(handoff.label, handoff.id)}
    elif args.end == "release":
        result["released"] = json.loads(writer.release().encode())
    participant.close()
    _write_json(args.out, result)
    return 0


def command_race(args: argparse.Namespace) -> int:
    """Watches a label and claims until `--expect` verdicts were seen; writes what it saw per handoff id (and,
    with --checkpoints, per released checkpoint id)."""
    deadline = time.monotonic() + args.deadline
    ranked = not args.no_rank
    if ranked:
        # §5 "Ranked claims" ranks among the instances online (§9.1): read the statuses, and publish our own birth (with
        # its Will) so that the other participants rank us too.
        participant = Participant(
            args.host, args.port, args.prefix, timeout=args.timeout, keys=_keys(args), encrypt=args.encrypt,
            will_delay=args.will_delay,
        ).connect()
    else:
        participant = _participant(args)
    try:
        if ranked:
            participant.announce()
        participant.watch(args.label, checkpoints=args.checkpoints)
        if args.ready_file:
            _write_json(args.ready_file, {"instance": participant.instance})
        if args.go_file and not _wait_for_file(args.go_file, deadline):
            print(f"error: {args.go_file} did not appear in time", file=sys.stderr)
            return 2
        racer = Racer(
            participant, args.label, set(args.readable_versions), args.claim_delay / 1000, args.claim_jitter / 1000,
            checkpoints=args.checkpoints, rank_step=args.rank_step / 1000 if ranked else 0.0,
            rank_max_steps=args.rank_max_steps,
        )
        complete = racer.run(args.expect, deadline)
        summary = {
            "instance": participant.instance,
            "complete": complete,
            "handoffs": {key: value.as_json() for key, value in sorted(racer.results.items())},
        }
        if args.checkpoints:
            with participant._lock:
                summary["releasedThrough"] = dict(participant._released_through)
            summary["heldVerdicts"] = racer.held_verdicts
        with participant._lock:
            if participant.restore_log:
                summary["restores"] = list(participant.restore_log)  # §10.6: the restores it published
        _write_json(args.out, summary)
        if not complete:
            print(f"error: saw {len(racer.results)} verdicts of {args.expect} before the deadline", file=sys.stderr)
            return 1
    finally:
        if ranked:
            with contextlib.suppress(Exception):
                participant.remove_status()  # §9.1 "Graceful shutdown": no checkpoints of ours to release
        participant.close()
    return 0


def command_garbage(args: argparse.Namespace) -> int:
    """Publishes malformed handoffs under a label; writes kind, id, payload and expected outcome of each."""
    participant = _participant(args)
    try:
        cases = garbage_payloads(participant, args.label)
        for _, handoff_id, payload, _ in cases:
            topic = participant.topics.handoff(args.label, handoff_id)
            participant.publish(topic, payload, retain=True, content_type=ENVELOPE_CONTENT_TYPE)
        _write_json(
            args.out,
            [
                {"kind": kind, "id": handoff_id, "payload": base64.b64encode(payload).decode(), "expect": expect}
                for kind, handoff_id, payload, expect in cases
            ],
        )
    finally:
        participant.close()
    return 0


def garbage_checkpoints(participant: Participant, label: str) -> list[tuple[str, str, bytes]]:
    """(kind, writer instance, payload) of checkpoints that fail §4 or §9.2 on their topic, one writer each."""
    cases: list[tuple[str, str, bytes]] = []

    def checkpoint_of(instance: str, **overrides: Any) -> bytes:
        envelope = Envelope(new_id(), label, 1, rfc3339_ms(), {"instance": instance}, "application/json", b'{"n":1}', 1)
        header = envelope.header()
        header.update(overrides)
        return encode_header({k: v for k, v in header.items() if v is not _DROP}) + b"\n" + envelope.data

    for kind, make in [
        ("not-an-envelope", lambda i: b"\x00\xffnot a checkpoint"),
        ("no-incarnation", lambda i: checkpoint_of(i, incarnation=_DROP)),
        ("incarnation-0", lambda i: checkpoint_of(i, incarnation=0)),
        ("other-instance", lambda i: checkpoint_of(i, origin={"instance": new_id()})),
        ("other-label", lambda i: checkpoint_of(i, label=label + "-other")),
        ("truncated", lambda i: checkpoint_of(i)[:-2]),
    ]:
        instance = new_id()
        cases.append((kind, instance, make(instance)))
    return cases


def command_garbage_checkpoints(args: argparse.Namespace) -> int:
    """Publishes unreadable checkpoints of a label (each by a made-up writer) with this reader's verdict on each;
    once --release-file exists, publishes each writer's death notice (releasing them: §9.3 dead-letters them)."""
    participant = _participant(args)
    try:
        cases = garbage_checkpoints(participant, args.label)
        entries = []
        for kind, instance, payload in cases:
            topic = participant.topics.checkpoint(args.label, instance)
            participant.publish(topic, payload, retain=True, content_type=ENVELOPE_CONTENT_TYPE)
            try:
                decode_envelope(payload, args.label, instance, checkpoint=True)
                expect = "ok"
            except Rejection as rejection:
                expect = rejection.reason
            entries.append({"kind": kind, "instance": instance, "payload": base64.b64encode(payload).decode(), "expect": expect})
        _write_json(args.out, entries)
        if args.release_file:
            if not _wait_for_file(args.release_file, time.monotonic() + args.deadline):
                print(f"error: {args.release_file} did not appear in time", file=sys.stderr)
                return 2
            for _, instance, _ in cases:
                notice = InstanceStatus(instance, 1, "dead", 1)
                participant.publish(participant.topics.status(instance), notice.encode(), retain=True)
    finally:
        participant.close()
    return 0


def command_dead_letters(args: argparse.Namespace) -> int:
    """Writes the label's dead letters: id -> payload (base64) and the §7 user properties."""
    participant = _participant(args)
    try:
        messages = participant.retained(participant.topics.dead_letter_filter(args.label))
        letters = {}
        for topic, message in messages.items():
            pairs = user_properties(message)
            letters[topic.rsplit("/", 1)[1]] = {
                "topic": topic,
                "payload": base64.b64encode(bytes(message.payload)).decode(),
                "reason": first_property(pairs, DEAD_REASON),
                "detail": first_property(pairs, DEAD_DETAIL),
                "by": first_property(pairs, DEAD_BY),
                "at": first_property(pairs, DEAD_AT),
                "from": first_property(pairs, DEAD_TOPIC),
            }
        _write_json(args.out, letters)
    finally:
        participant.close()
    return 0


def command_dump(args: argparse.Namespace) -> int:
    """Prints every retained message under the prefix, decoding envelopes where possible."""
    participant = _participant(args)
    try:
        messages = participant.retained(f"{args.prefix}/#")
        listing = []
        for topic, message in sorted(messages.items()):
            entry: dict[str, Any] = {"topic": topic, "bytes": len(message.payload)}
            entry["userProperties"] = user_properties(message)
            try:
                kind, level, handoff_id = participant.topics.split(topic)
                entry["label"] = decode_label(level)
                envelope = decode_envelope(
                    bytes(message.payload), entry["label"], handoff_id, keys=participant.keys,
                )
                entry["header"] = envelope.header()
                entry["data"] = envelope.data.decode("utf-8", "replace")
            except (ValueError, Rejection) as error:
                entry["unreadable"] = str(error)
                entry["payload"] = bytes(message.payload)[:200].decode("utf-8", "replace")
            listing.append(entry)
        _write_json(args.out, listing)
    finally:
        participant.close()
    return 0


def command_corpus(args: argparse.Namespace) -> int:
    """Writes the envelope corpus with this reader's verdict on each payload (no broker)."""
    _write_json(
        args.out,
        [
            {"name": name, "label": label, "id": handoff_id, "payload": base64.b64encode(payload).decode(),
             "verdict": classify(payload, label, handoff_id)}
            for name, label, handoff_id, payload in envelope_corpus()
        ],
    )
    return 0


def command_attack(args: argparse.Namespace) -> int:
    """§10.7: what a client that may publish under the prefix, but holds no key, can do. With a plain (unkeyed) MQTT
    connection it publishes `--forge` forged unsigned envelopes on fresh ids, then takes the label's waiting handoffs
    (read up to an ordering marker; `--targets` picks them by id) in topic order and gives the first `--bare-clear`
    of them a bare clear (zero-length retained, no user property), the next `--forged-claim` a clear naming a made-up
    `handoff-claim-by` (and, with --fake-claim-signature, a made-up `handoff-claim-signature`), the next `--replace` an
    unreadable retained payload. Writes what it did."""
    participant = Participant(args.host, args.port, args.prefix, timeout=args.timeout).connect()
    try:
        forged = []
        for index in range(args.forge):
            text = args.data.replace("{i}", str(index))
            json.loads(text)
            envelope = participant.make_envelope(args.label, args.vsn, text.encode("utf-8"))
            topic = participant.topics.handoff(args.label, envelope.id)
            payload = envelope.encode()
            participant.publish(topic, payload, retain=True, content_type=ENVELOPE_CONTENT_TYPE)
            forged.append({"id": envelope.id, "topic": topic, "payload": base64.b64encode(payload).decode()})
        forged_topics = {entry["topic"] for entry in forged}
        waiting = sorted(t for t in participant.retained(participant.topics.handoff_filter(args.label)) if t not in forged_topics)
        if args.targets:
            wanted = [participant.topics.handoff(args.label, handoff_id) for handoff_id in args.targets]
            waiting = [topic for topic in wanted if topic in waiting]
        needed = args.bare_clear + args.forged_claim + args.replace
        if len(waiting) < needed:
            print(f"error: {len(waiting)} waiting handoffs, {needed} needed", file=sys.stderr)
            return 2
        bare, claims, replaced = [], [], []
        for topic in waiting[: args.bare_clear]:
            participant.publish(topic, b"", retain=True)
            bare.append({"id": topic.rsplit("/", 1)[1], "topic": topic})
        for topic in waiting[args.bare_clear : args.bare_clear + args.forged_claim]:
            user = [(CLAIM_BY, args.claim_by), (CLAIM_PURPOSE, PURPOSE_MERGE)]
            if args.fake_claim_signature:
                user.append((CLAIM_SIGNATURE, f"{SIGNATURE_ALG}:k1:{'0' * 64}"))
            participant.publish(topic, b"", retain=True, user=user)
            claims.append({"id": topic.rsplit("/", 1)[1], "topic": topic, "claimBy": args.claim_by})
        for topic in waiting[args.bare_clear + args.forged_claim : needed]:
            payload = b"\x00\xffa forged replacement, not an envelope"
            participant.publish(topic, payload, retain=True, content_type=ENVELOPE_CONTENT_TYPE)
            replaced.append({"id": topic.rsplit("/", 1)[1], "topic": topic, "payload": base64.b64encode(payload).decode()})
        _write_json(args.out, {"instance": participant.instance, "forged": forged, "bareCleared": bare,
                               "forgedClaims": claims, "replaced": replaced})
    finally:
        participant.close()
    return 0


def command_signing_vectors(args: argparse.Namespace) -> int:
    """Writes the §10 test vectors (no broker)."""
    vectors = signing_vectors()
    failures = verify_vectors(vectors)
    if failures:
        return 1
    _write_json(args.out, vectors)
    return 0


def command_verify_vectors(args: argparse.Namespace) -> int:
    """Checks this implementation against a §10 vectors file (no broker); exit 1 on any failure."""
    with open(args.file, encoding="utf-8") as file:
        vectors = json.load(file)
    return 1 if verify_vectors(vectors) else 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    initiate = commands.add_parser("initiate", help="hand off states")
    _common(initiate)
    initiate.add_argument("--label", required=True)
    initiate.add_argument("--vsn", type=int, default=1)
    initiate.add_argument("--data", required=True, help="JSON; {i} is replaced by the index")
    initiate.add_argument("--count", type=int, default=1)
    initiate.add_argument("--start", type=int, default=0, help="the first index")
    initiate.add_argument("--out")
    initiate.set_defaults(run=command_initiate)

    race = commands.add_parser("race", help="claim a label's handoffs until N verdicts")
    _common(race)
    race.add_argument("--label", required=True)
    race.add_argument("--expect", type=int, required=True, help="verdicts to see before stopping")
    race.add_argument("--readable-versions", type=int, nargs="+", default=[1])
    race.add_argument("--deadline", type=float, default=120.0, help="seconds for the whole race")
    race.add_argument("--claim-delay", type=float, default=0.0, help="delay each claim by at least this many ms")
    race.add_argument("--claim-jitter", type=float, default=0.0, help="and by up to this many ms more, at random")
    race.add_argument("--ready-file", help="written once subscribed and synced")
    race.add_argument("--go-file", help="claim only once this file exists")
    race.add_argument("--checkpoints", action="store_true", help="also claim the label's released checkpoints (§9.3)")
    race.add_argument(
        "--no-rank", action="store_true",
        help="§5 \"Ranked claims\" off: claim at once, publish no status (by default the racer publishes its birth, "
        "ranks itself among the instances online and waits its rank's delay for a verdict before claiming)",
    )
    race.add_argument("--rank-step", type=float, default=RANK_STEP * 1000, help="ms of wait per rank (default 3)")
    race.add_argument("--rank-max-steps", type=int, default=RANK_MAX_STEPS, help="ranks beyond this wait as long (default 8)")
    race.add_argument("--will-delay", type=int, default=5, help="with ranking: the Will Delay Interval of its status, seconds")
    race.add_argument("--out")
    race.set_defaults(run=command_race)

    checkpoint = commands.add_parser("checkpoint", help="keep checkpoints of a label, then crash (§9)")
    _common(checkpoint)
    checkpoint.add_argument("--label", required=True)
    checkpoint.add_argument("--vsn", type=int, default=1)
    checkpoint.add_argument("--data", required=True, help="JSON; {i} is replaced by the write's index")
    checkpoint.add_argument("--count", type=int, default=1, help="checkpoints to write (at least)")
    checkpoint.add_argument("--start", type=int, default=0, help="the first index")
    checkpoint.add_argument("--interval", type=float, default=0.0, help="ms between two writes")
    checkpoint.add_argument("--until-file", help="keep writing (every --interval) until this file exists")
    checkpoint.add_argument("--ready-file", help="written (what was written so far) after the writes")
    checkpoint.add_argument("--end-file", help="after the writes, end only once this file exists")
    checkpoint.add_argument(
        "--end", choices=["crash", "release", "handoff"], default="crash",
        help="crash: exit without DISCONNECT (the Will releases); release: publish its own death notice; "
        "handoff: hand off the last state and remove the checkpoint (§9.6)",
    )
    checkpoint.add_argument("--will-delay", type=int, default=1, help="the Will Delay Interval, seconds")
    checkpoint.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats (0: none)")
    checkpoint.add_argument("--deadline", type=float, default=120.0, help="seconds to wait for --end-file")
    checkpoint.add_argument("--out")
    checkpoint.set_defaults(run=command_checkpoint)

    garbage = commands.add_parser("garbage", help="publish malformed handoffs")
    _common(garbage)
    garbage.add_argument("--label", required=True)
    garbage.add_argument("--out")
    garbage.set_defaults(run=command_garbage)

    garbage_cp = commands.add_parser("garbage-checkpoints", help="publish unreadable checkpoints, then release them")
    _common(garbage_cp)
    garbage_cp.add_argument("--label", required=True)
    garbage_cp.add_argument("--release-file", help="once this file exists, publish the writers' death notices")
    garbage_cp.add_argument("--deadline", type=float, default=60.0, help="seconds to wait for --release-file")
    garbage_cp.add_argument("--out")
    garbage_cp.set_defaults(run=command_garbage_checkpoints)

    dead = commands.add_parser("dead-letters", help="read a label's dead letters")
    _common(dead)
    dead.add_argument("--label", required=True)
    dead.add_argument("--out")
    dead.set_defaults(run=command_dead_letters)

    dump = commands.add_parser("dump", help="print retained messages under the prefix")
    _common(dump)
    dump.add_argument("--out")
    dump.set_defaults(run=command_dump)

    corpus = commands.add_parser("corpus", help="envelope edge cases with this reader's verdicts (no broker)")
    corpus.add_argument("--out")
    corpus.set_defaults(run=command_corpus)

    attack = commands.add_parser("attack", help="forge, clear and replace handoffs without a key (§10.7)")
    _common(attack)
    attack.add_argument("--label", required=True)
    attack.add_argument("--forge", type=int, default=1, help="forged unsigned envelopes to publish on fresh ids")
    attack.add_argument("--data", default='{"source":"attacker","n":{i}}', help="the forged state (JSON, {i}: index)")
    attack.add_argument("--vsn", type=int, default=1)
    attack.add_argument("--bare-clear", type=int, default=1, help="waiting handoffs to clear without a claimer")
    attack.add_argument("--forged-claim", type=int, default=1, help="waiting handoffs to clear with a made-up claimer")
    attack.add_argument("--claim-by", default="attacker-made-up", help="the made-up handoff-claim-by")
    attack.add_argument("--fake-claim-signature", action="store_true", help="add a made-up handoff-claim-signature")
    attack.add_argument("--replace", type=int, default=0, help="waiting handoffs to replace with an unreadable payload")
    attack.add_argument("--targets", nargs="+", help="the waiting handoff ids to attack (default: all, in topic order)")
    attack.add_argument("--out")
    attack.set_defaults(run=command_attack)

    vectors = commands.add_parser("signing-vectors", help="write the §10 test vectors (no broker)")
    vectors.add_argument("--out")
    vectors.set_defaults(run=command_signing_vectors)

    verify = commands.add_parser("verify-vectors", help="check this client against a §10 vectors file (no broker)")
    verify.add_argument("file")
    verify.set_defaults(run=command_verify_vectors)

    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
