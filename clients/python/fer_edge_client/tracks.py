"""`Tracks`: each face's life rebuilt from fer-edge's messages.

A face is born on `new`, updated by `expression` and `expression_changed`,
and ends on `end` (with its summary). A client that connects, or
reconnects, in the middle of a face's life missed its `new` (and maybe its
`end`): the retained `faces/tracked` says who is tracked now, so faces
listed there are adopted (`adopted = True`) and faces no longer listed are
ended without a summary (`end is None`). Expressions for a face never
announced adopt it too.

What cannot happen:
- a new person merged into an old face: every payload names its `run` (new
  at every start of the daemon) and track ids are never reused; a message
  from a new run ends the faces of the old one (`end is None`,
  `end_reason = "restart"`), and late messages of an old run are ignored;
- an ended face revived by a late message: ids that ended are remembered
  (the last `MAX_ENDED`) and their messages ignored;
- a false end from a stale track list (a retained list republished after a
  broker restart, older than the face's own messages): a list ends only the
  faces it is newer than;
- unbounded growth: `gone` keeps the last `max_gone` faces.

`status` `offline` (a clean stop, or the daemon's last will) ends the faces
still present (`end_reason = "offline"`): the device no longer sees anyone.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .messages import Event, Expression, Source, Summary, Tracked

#: Track ids of ended faces remembered, per run.
MAX_ENDED = 10_000


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
    #: Why it ended: "end" (its event), "untracked" (left the track list),
    #: "restart" (the daemon started again), "offline" (the daemon stopped
    #: or was cut off).
    end_reason: Optional[str] = None
    #: The run it belongs to (None from a daemon older than schema 1.4).
    run: Optional[str] = None
    #: The newest timestamp of a message about it.
    last_timestamp: float = 0.0


class Tracks:
    """The faces present (`present`) and those that left (`gone`)."""

    def __init__(self, max_gone: int = 1000) -> None:
        self.present: Dict[int, Face] = {}
        self.gone: List[Face] = []
        self.max_gone = max_gone
        self.summary: Optional[Summary] = None
        self.status: Optional[str] = None
        #: The latest `source` state (is the camera delivering?).
        self.source: Optional[Source] = None
        #: The daemon's current run.
        self.run: Optional[str] = None
        self.on_new: Optional[Callable[[Face], None]] = None
        self.on_end: Optional[Callable[[Face], None]] = None
        self._ended: "OrderedDict[int, None]" = OrderedDict()
        self._old_runs: "OrderedDict[str, None]" = OrderedDict()
        self._tracked_timestamp = float("-inf")

    def _face(self, track_id: int, adopted: bool, timestamp: float) -> Optional[Face]:
        if track_id in self._ended:
            return None
        face = self.present.get(track_id)
        if face is None:
            face = Face(track_id, adopted=adopted, run=self.run)
            self.present[track_id] = face
            if self.on_new:
                self.on_new(face)
        face.last_timestamp = max(face.last_timestamp, timestamp)
        return face

    def _end(self, track_id: int, event: Optional[Event], reason: str) -> None:
        face = self.present.pop(track_id, None)
        if face is None:
            if event is None or track_id in self._ended:
                return
            face = Face(track_id, adopted=True, run=self.run)
        face.end, face.ended, face.end_reason = event, True, reason
        self._ended[track_id] = None
        while len(self._ended) > MAX_ENDED:
            self._ended.popitem(last=False)
        self.gone.append(face)
        if len(self.gone) > self.max_gone:
            del self.gone[: len(self.gone) - self.max_gone]
        if self.on_end:
            self.on_end(face)

    def _end_all(self, reason: str) -> None:
        for tid in sorted(self.present):
            self._end(tid, None, reason)

    def _same_run(self, run: Optional[str]) -> bool:
        """False for a message of an old run (ignore it); a message of a
        new run ends the faces of the current one first."""
        if run is None or run == self.run:
            return True
        if run in self._old_runs:
            return False
        if self.run is not None:
            self._end_all("restart")
            self._old_runs[self.run] = None
            while len(self._old_runs) > 100:
                self._old_runs.popitem(last=False)
        self.run = run
        self._ended.clear()
        self._tracked_timestamp = float("-inf")
        return True

    def apply(self, msg) -> None:
        """Takes one parsed message (see `messages.parse`)."""
        if isinstance(msg, str):
            self.status = msg
            if msg == "offline":
                self._end_all("offline")
            return
        if not self._same_run(getattr(msg, "run", None)):
            return
        if isinstance(msg, Event):
            if msg.type == "new":
                self._face(msg.track_id, False, msg.timestamp)
            elif msg.type == "end":
                self._end(msg.track_id, msg, "end")
            elif msg.type == "expression_changed":
                f = self._face(msg.track_id, True, msg.timestamp)
                if f:
                    f.changes.append((msg.timestamp, msg.previous_expression, msg.expression))
        elif isinstance(msg, Expression):
            f = self._face(msg.track_id, True, msg.timestamp)
            if f:
                f.latest = msg
                f.readings += 1
        elif isinstance(msg, Tracked):
            if msg.timestamp < self._tracked_timestamp:
                return
            self._tracked_timestamp = msg.timestamp
            now = set(msg.track_ids)
            for tid in sorted(now - set(self.present)):
                self._face(tid, True, msg.timestamp)
            for tid in sorted(set(self.present) - now):
                if self.present[tid].last_timestamp <= msg.timestamp:
                    self._end(tid, None, "untracked")
        elif isinstance(msg, Summary):
            self.summary = msg
        elif isinstance(msg, Source):
            self.source = msg
