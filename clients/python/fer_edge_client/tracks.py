"""`Tracks`: each face's life rebuilt from fer-edge's messages.

A face is born on `new`, updated by `expression` and `expression_changed`,
and ends on `end` (with its summary). A client that connects, or
reconnects, in the middle of a face's life missed its `new` (and maybe its
`end`): the retained `faces/tracked` says who is tracked now, so faces
listed there are adopted (`adopted = True`) and faces no longer listed are
ended without a summary (`end is None`). Expressions for a face never
announced adopt it too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .messages import Event, Expression, Summary, Tracked


@dataclass
class Face:
    track_id: int
    #: True when the `new` event was missed (joined mid-life).
    adopted: bool = False
    #: The latest expression message.
    latest: Optional[Expression] = None
    #: Expression messages received.
    readings: int = 0
    #: (timestamp, previous, now) of each expression change.
    changes: List[tuple] = field(default_factory=list)
    #: The `end` event (None: ended while this client was away).
    end: Optional[Event] = None
    ended: bool = False


class Tracks:
    """The faces present (`present`) and those that left (`gone`)."""

    def __init__(self) -> None:
        self.present: Dict[int, Face] = {}
        self.gone: List[Face] = []
        self.summary: Optional[Summary] = None
        self.status: Optional[str] = None
        self.on_new: Optional[Callable[[Face], None]] = None
        self.on_end: Optional[Callable[[Face], None]] = None

    def _face(self, track_id: int, adopted: bool) -> Face:
        face = self.present.get(track_id)
        if face is None:
            face = Face(track_id, adopted=adopted)
            self.present[track_id] = face
            if self.on_new:
                self.on_new(face)
        return face

    def _end(self, track_id: int, event: Optional[Event]) -> None:
        face = self.present.pop(track_id, None)
        if face is None:
            if event is None:
                return
            face = Face(track_id, adopted=True)
        face.end, face.ended = event, True
        self.gone.append(face)
        if self.on_end:
            self.on_end(face)

    def apply(self, msg) -> None:
        """Takes one parsed message (see `messages.parse`)."""
        if isinstance(msg, Event):
            if msg.type == "new":
                self._face(msg.track_id, adopted=False)
            elif msg.type == "end":
                self._end(msg.track_id, msg)
            elif msg.type == "expression_changed":
                f = self._face(msg.track_id, adopted=True)
                f.changes.append((msg.timestamp, msg.previous_expression, msg.expression))
        elif isinstance(msg, Expression):
            f = self._face(msg.track_id, adopted=True)
            f.latest = msg
            f.readings += 1
        elif isinstance(msg, Tracked):
            now = set(msg.track_ids)
            for tid in sorted(now - set(self.present)):
                self._face(tid, adopted=True)
            for tid in sorted(set(self.present) - now):
                self._end(tid, None)
        elif isinstance(msg, Summary):
            self.summary = msg
        elif isinstance(msg, str):
            self.status = msg
