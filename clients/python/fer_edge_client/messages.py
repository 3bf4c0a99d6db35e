"""fer-edge's MQTT payloads as dataclasses, one per definition of
schema/mqtt.schema.json (schema_version 1.3), and `parse`, which picks the
class by topic as the schema's x-topics does.

Fields follow the schema's properties one for one (the tests check it);
optional ones default to None. Unknown keys from a newer minor version are
kept in `extra` rather than refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional, Union

SCHEMA_VERSION = "1.3"


def _build(cls, d: dict):
    names = {f.name for f in fields(cls)}
    known = {k: v for k, v in d.items() if k in names}
    obj = cls(**known)
    obj.extra = {k: v for k, v in d.items() if k not in names}
    return obj


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
    extra: dict = field(default_factory=dict, repr=False)


Message = Union[Expression, Event, Tracked, Summary, str, dict]


def parse(topic: str, payload: bytes) -> Optional[Message]:
    """The typed message of one MQTT message under
    `{prefix}/{device}/`; `status` gives its text, `stats` a dict, an empty
    payload (a retained message cleared) or another topic None."""
    levels = topic.split("/")
    if len(levels) < 3 or not payload:
        return None
    tail = levels[2:]
    if tail == ["status"]:
        return payload.decode()
    d = json.loads(payload)
    if len(tail) == 3 and tail[0] == "faces" and tail[2] == "expression":
        return _build(Expression, d)
    if tail == ["faces", "tracked"]:
        return _build(Tracked, d)
    if tail == ["events"]:
        return _build(Event, d)
    if tail == ["summary"]:
        s = _build(Summary, d)
        s.tracks = [SummaryFace(**t) for t in s.tracks]
        return s
    if tail == ["stats"]:
        return d
    return None
