"""fer-edge's MQTT payloads as dataclasses, one per definition of
schema/mqtt.schema.json (schema_version 1.5), and `parse`, which picks the
class by topic as the schema's x-topics does.

Fields follow the schema's properties one for one (the tests check it);
optional ones default to None. Unknown keys from a newer minor version are
kept in `extra` rather than refused.

Anything that is not a well-formed fer-edge message (bytes that are not
UTF-8 or JSON, NaN, a payload over `MAX_PAYLOAD`, JSON nested too deep, a
missing or mistyped field) raises `BadMessage` naming the reason, so one
bad message on a shared broker is refused and the next one is read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional, Union

SCHEMA_VERSION = "1.5"

#: The largest payload read (an expression message is ~1 KB).
MAX_PAYLOAD = 256 * 1024


class BadMessage(ValueError):
    """A message that is not a fer-edge message; `str()` says why."""


_NUMBER = (int, float)

# The fields a reader relies on, and their types (the schema has them all;
# these are the ones `Tracks` and the examples read).
_CHECKS = {
    "Expression": {"track_id": int, "timestamp": _NUMBER, "expression": str, "confidence": _NUMBER,
                   "valence": _NUMBER, "arousal": _NUMBER, "probabilities": dict, "bbox": list,
                   "bbox_normalized": list},
    "Event": {"type": str, "track_id": int, "timestamp": _NUMBER},
    "Tracked": {"timestamp": _NUMBER, "track_ids": list},
    "Summary": {"timestamp": _NUMBER, "faces": int, "tracks": list},
    "Source": {"timestamp": _NUMBER, "state": str},
}


def _build(cls, d):
    if not isinstance(d, dict):
        raise BadMessage(f"{cls.__name__.lower()}: a JSON object was expected, not {type(d).__name__}")
    for name, kind in _CHECKS.get(cls.__name__, {}).items():
        v = d.get(name)
        if v is None:
            raise BadMessage(f"{cls.__name__.lower()}: no {name!r}")
        if not isinstance(v, kind) or isinstance(v, bool):
            raise BadMessage(f"{cls.__name__.lower()}: {name!r} is {type(v).__name__}: {str(v)[:40]!r}")
    if "run" in d and not isinstance(d["run"], str):
        raise BadMessage(f"{cls.__name__.lower()}: 'run' is not a string")
    names = {f.name for f in fields(cls)}
    known = {k: v for k, v in d.items() if k in names}
    try:
        obj = cls(**known)
    except TypeError as e:  # a required field missing
        raise BadMessage(f"{cls.__name__.lower()}: {e}") from None
    obj.extra = {k: v for k, v in d.items() if k not in names}
    return obj


def _refuse_constant(name):
    raise BadMessage(f"{name} is not a number fer-edge sends")


def _json(payload: bytes):
    try:
        return json.loads(payload, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadMessage("JSON nested too deep") from None
    except UnicodeDecodeError:
        raise BadMessage("not UTF-8") from None
    except ValueError as e:
        if isinstance(e, BadMessage):
            raise
        raise BadMessage(f"not JSON: {e}") from None


@dataclass
class Expression:
    """`faces/<track_id>/expression`: one face on one frame, smoothed."""

    schema_version: str
    track_id: int
    timestamp: float
    frame_time: float
    frame_seq: int
    expression: str
    confidence: float
    valence: float
    arousal: float
    probabilities: Dict[str, float]
    bbox: List[float]
    bbox_normalized: List[float]
    frame_width: int
    frame_height: int
    model: str
    va_source: str
    calibrated: bool
    run: Optional[str] = None
    raw: Optional[dict] = None
    landmarks: Optional[Dict[str, List[float]]] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Event:
    """`events`: `new`, `expression_changed` or `end` of one track."""

    schema_version: str
    type: str
    track_id: int
    timestamp: float
    run: Optional[str] = None
    expression: Optional[str] = None
    previous_expression: Optional[str] = None
    confidence: Optional[float] = None
    valence: Optional[float] = None
    arousal: Optional[float] = None
    duration_s: Optional[float] = None
    frames: Optional[int] = None
    mean_valence: Optional[float] = None
    mean_arousal: Optional[float] = None
    dominant_expression: Optional[str] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Tracked:
    """`faces/tracked` (retained): the tracks confirmed now."""

    schema_version: str
    timestamp: float
    track_ids: List[int]
    run: Optional[str] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class Source:
    """`source` (retained): whether the camera delivers frames."""
    schema_version: str
    timestamp: float
    state: str
    run: Optional[str] = None
    reason: Optional[str] = None
    extra: dict = field(default_factory=dict, repr=False)


@dataclass
class SummaryFace:
    track_id: int
    expression: str
    confidence: float
    valence: float
    arousal: float


@dataclass
class Summary:
    """`summary` (retained): the faces present and the group's mood."""

    schema_version: str
    timestamp: float
    faces: int
    tracks: List[SummaryFace]
    dominant_expression: Optional[str]
    mean_valence: Optional[float]
    mean_arousal: Optional[float]
    run: Optional[str] = None
    extra: dict = field(default_factory=dict, repr=False)


Message = Union[Expression, Event, Tracked, Summary, Source, str, dict]


def parse(topic: str, payload: bytes) -> Optional[Message]:
    """The typed message of one MQTT message under
    `{prefix}/{device}/`; `status` gives its text, `stats` a dict, an empty
    payload (a retained message cleared) or another topic None. Raises
    `BadMessage` for anything else on fer-edge's topics."""
    levels = topic.split("/")
    if len(levels) < 3 or not payload:
        return None
    if len(payload) > MAX_PAYLOAD:
        raise BadMessage(f"{len(payload)} bytes, over the {MAX_PAYLOAD} fer-edge ever sends")
    tail = levels[2:]
    if tail == ["status"]:
        try:
            text = bytes(payload).decode()
        except UnicodeDecodeError:
            raise BadMessage("status: not UTF-8") from None
        if text not in ("online", "offline"):
            raise BadMessage(f"status: {text[:40]!r} is neither online nor offline")
        return text
    if len(tail) == 3 and tail[0] == "faces" and tail[2] == "expression":
        m = _build(Expression, _json(payload))
        if str(m.track_id) != tail[1]:
            raise BadMessage(f"expression: track_id {m.track_id} on the topic of track {tail[1]!r}")
        return m
    if tail == ["faces", "tracked"]:
        m = _build(Tracked, _json(payload))
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in m.track_ids):
            raise BadMessage("tracked: track_ids holds something other than integers")
        return m
    if tail == ["events"]:
        m = _build(Event, _json(payload))
        if m.type not in ("new", "expression_changed", "end"):
            raise BadMessage(f"event: unknown type {m.type[:40]!r}")
        return m
    if tail == ["summary"]:
        s = _build(Summary, _json(payload))
        try:
            s.tracks = [SummaryFace(**t) for t in s.tracks]
        except TypeError as e:
            raise BadMessage(f"summary: a face entry is malformed: {e}") from None
        return s
    if tail == ["source"]:
        m = _build(Source, _json(payload))
        if m.state not in ("ok", "unavailable"):
            raise BadMessage(f"source: state {str(m.state)[:40]!r} is neither ok nor unavailable")
        return m
    if tail == ["stats"]:
        d = _json(payload)
        if not isinstance(d, dict):
            raise BadMessage("stats: a JSON object was expected")
        return d
    return None
