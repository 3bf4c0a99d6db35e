"""`Client`: paho-mqtt subscribed to one fer-edge device, feeding `Tracks`.

paho calls our handlers on its network thread, and an exception there ends
that thread for good: nothing more is received, silently. So a message that
is not fer-edge's (`BadMessage`) is refused with a logged reason and
counted in `refused`, and an exception raised by the application's own
callbacks (`on_message`, `Tracks.on_new`, `Tracks.on_end`) is logged with
its traceback; either way the next message is read.
"""
from __future__ import annotations

import argparse
import logging
import threading
import time
from collections import Counter
from typing import Callable, Optional

import paho.mqtt.client as mqtt

from .messages import BadMessage, parse
from .tracks import Tracks

log = logging.getLogger("fer_edge_client")


class Client:
    """Subscribes to `{prefix}/{device}/#` at every (re)connection, parses
    each message, and keeps `tracks` up to date. `on_message(topic, msg)`
    sees every parsed message too."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, device: str = "kiosk-1",
                 prefix: str = "fer-edge", username: Optional[str] = None,
                 password: Optional[str] = None, client_id: str = "") -> None:
        self.host, self.port = host, port
        self.prefix, self.device = prefix, device
        self.base = f"{prefix}/{device}"
        #: Devices whose `status` this broker holds (ours or not): a wrong
        #: `device` is named with the ones that exist.
        self.devices_seen: set = set()
        self._heard_ours = False
        self._hint: Optional[threading.Timer] = None
        self.tracks = Tracks()
        #: Messages refused, by reason.
        self.refused: Counter = Counter()
        self._logged_at = 0.0
        self.on_message: Optional[Callable[[str, object], None]] = None
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self.mqtt.username_pw_set(username, password)
        self.mqtt.on_connect = self._connected
        self.mqtt.on_message = self._message

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        client.subscribe(self.base + "/#", qos=1)
        client.subscribe(f"{self.prefix}/+/status", qos=1)

    def _message(self, client, userdata, m) -> None:
        levels = m.topic.split("/")
        if len(levels) == 3 and levels[2] == "status" and m.topic != self.base + "/status":
            self.devices_seen.add(levels[1])
            return
        self._heard_ours = True
        try:
            msg = parse(m.topic, m.payload)
        except BadMessage as e:
            self._refuse(m.topic, str(e))
            return
        if msg is None:
            return
        try:
            self.tracks.apply(msg)
            if self.on_message:
                self.on_message(m.topic, msg)
        except Exception:  # the application's callback: keep the loop alive
            log.exception("fer_edge_client: a callback raised on %s; the client goes on", m.topic)

    def _refuse(self, topic: str, reason: str) -> None:
        """Counts a refused message; logs the first of each reason, then at
        most one line every 10 s with the counts (a flood of bad messages
        must not flood the log)."""
        key = reason.split(":")[0]
        self.refused[key] += 1
        now = time.monotonic()
        if self.refused[key] == 1 or now - self._logged_at >= 10:
            self._logged_at = now
            log.warning("fer_edge_client: refused a message on %s: %s (refused so far: %s)",
                        topic, reason, dict(self.refused))

    def connect(self) -> "Client":
        self.mqtt.connect(self.host, self.port, keepalive=30)
        return self

    def loop_start(self, hint_after: float = 5.0) -> "Client":
        self.connect()
        self.mqtt.loop_start()
        # Nothing from our device after a while: say which ones exist.
        self._hint = threading.Timer(hint_after, self._hint_device)
        self._hint.daemon = True
        self._hint.start()
        return self

    def _hint_device(self) -> None:
        if self._heard_ours:
            return
        others = sorted(self.devices_seen - {self.device})
        if others:
            log.warning("fer_edge_client: nothing from device %r under %r on %s:%s; devices there: %s (--device)",
                        self.device, self.prefix, self.host, self.port, ", ".join(others))
        else:
            log.warning("fer_edge_client: nothing from device %r under %r on %s:%s, and no fer-edge device "
                        "announced itself there: is fer-edge running and publishing to this broker (its [mqtt] "
                        "host, port, topic_prefix)?", self.device, self.prefix, self.host, self.port)

    def loop_forever(self) -> None:
        self.connect()
        self.mqtt.loop_forever()

    def stop(self) -> None:
        if self._hint:
            self._hint.cancel()
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def connection_args(parser: argparse.ArgumentParser, seconds: bool = True) -> argparse.ArgumentParser:
    """Adds --host, --port, --device, --prefix and (with `seconds`)
    --seconds, the examples' shared options, to `parser`."""
    parser.add_argument("--host", default="127.0.0.1", help="the MQTT broker fer-edge publishes to (default: %(default)s)")
    parser.add_argument("--port", type=int, default=1883, help="its port (default: %(default)s)")
    parser.add_argument("--device", default="kiosk-1",
                        help="fer-edge's [mqtt] device_id (default: %(default)s); a wrong one is named with those that exist")
    parser.add_argument("--prefix", default="fer-edge", help="fer-edge's [mqtt] topic_prefix (default: %(default)s)")
    if seconds:
        parser.add_argument("--seconds", type=float, default=0, help="stop after N seconds (0: never)")
    return parser


def from_args(args: argparse.Namespace) -> Client:
    """A client for the options `connection_args` added."""
    return Client(args.host, args.port, device=args.device, prefix=args.prefix)
