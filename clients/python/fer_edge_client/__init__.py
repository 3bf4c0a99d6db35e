"""Typed messages and a per-face view of fer-edge's MQTT output."""

from .messages import (
    SCHEMA_VERSION,
    Event,
    Expression,
    Source,
    Summary,
    SummaryFace,
    Tracked,
    parse,
)
from .tracks import Face, Tracks
from .client import Client, connection_args, from_args

__all__ = [
    "SCHEMA_VERSION",
    "Client",
    "connection_args",
    "from_args",
    "Event",
    "Expression",
    "Face",
    "Source",
    "Summary",
    "SummaryFace",
    "Tracked",
    "Tracks",
    "parse",
]
