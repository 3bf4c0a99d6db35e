"""`Client`: paho-mqtt subscribed to one fer-edge device, feeding `Tracks`."""
from __future__ import annotations

import argparse
from typing import Callable, Optional

import paho.mqtt.client as mqtt

from .messages import parse
from .tracks import Tracks


class Client:
    """Subscribes to `{prefix}/{device}/#` at every (re)connection, parses
    each message, and keeps `tracks` up to date. `on_message(topic, msg)`
    sees every parsed message too."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, device: str = "kiosk-1",
                 prefix: str = "fer-edge", username: Optional[str] = None,
                 password: Optional[str] = None, client_id: str = "") -> None:
        self.host, self.port = host, port
        self.base = f"{prefix}/{device}"
        self.tracks = Tracks()
        self.on_message: Optional[Callable[[str, object], None]] = None
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self.mqtt.username_pw_set(username, password)
        self.mqtt.on_connect = self._connected
        self.mqtt.on_message = self._message

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        client.subscribe(self.base + "/#", qos=1)

    def _message(self, client, userdata, m) -> None:
        msg = parse(m.topic, m.payload)
        if msg is None:
            return
        self.tracks.apply(msg)
        if self.on_message:
            self.on_message(m.topic, msg)

    def connect(self) -> "Client":
        self.mqtt.connect(self.host, self.port, keepalive=30)
        return self

    def loop_start(self) -> "Client":
        self.connect()
        self.mqtt.loop_start()
        return self

    def loop_forever(self) -> None:
        self.connect()
        self.mqtt.loop_forever()

    def stop(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def connection_args(parser: argparse.ArgumentParser, seconds: bool = True) -> argparse.ArgumentParser:
    """Adds --host, --port, --device, --prefix and (with `seconds`)
    --seconds, the examples' shared options, to `parser`."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--device", default="kiosk-1")
    parser.add_argument("--prefix", default="fer-edge")
    if seconds:
        parser.add_argument("--seconds", type=float, default=0, help="stop after N seconds (0: never)")
    return parser


def from_args(args: argparse.Namespace) -> Client:
    """A client for the options `connection_args` added."""
    return Client(args.host, args.port, device=args.device, prefix=args.prefix)
