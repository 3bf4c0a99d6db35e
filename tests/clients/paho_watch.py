"""Watches a topic filter with paho-mqtt (a real third-party client) until
the daemon says `offline`; prints one `topic payload` line per message as
it arrives. Used by tests/trust.rs for delivery at shutdown.

usage: paho_watch.py HOST PORT {311,5} QOS FILTER TIMEOUT_S
Prints `subscribed` once the broker granted the subscription. Exit 0 when
a retained-or-live `offline` arrived on a `/status` topic after `online`,
2 when refused, 3 on timeout.
"""
import sys
import time

import paho.mqtt.client as mqtt

host, port, version, qos, filt, timeout = sys.argv[1:7]
qos, timeout = int(qos), float(timeout)
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=proto)
state = {"online": False, "offline": False, "refused": None}


def on_connect(c, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        state["refused"] = str(reason_code)
    else:
        c.subscribe(filt, qos=qos)


def on_subscribe(c, userdata, mid, reason_codes, properties):
    print("subscribed", flush=True)


def on_message(c, userdata, msg):
    payload = msg.payload.decode("utf-8", "replace")
    print(msg.topic, payload, flush=True)
    if msg.topic.endswith("/status"):
        if payload == "online":
            state["online"] = True
        elif payload == "offline" and state["online"]:
            state["offline"] = True


client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, int(port), keepalive=10)
client.loop_start()
t0 = time.time()
while time.time() - t0 < timeout and not state["offline"] and not state["refused"]:
    time.sleep(0.02)
# Let a QoS 2 handshake in flight finish before leaving.
time.sleep(0.1)
client.loop_stop()
if state["refused"]:
    print("refused:", state["refused"], file=sys.stderr)
    sys.exit(2)
sys.exit(0 if state["offline"] else 3)
