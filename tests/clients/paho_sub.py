"""Subscribes with paho-mqtt (a real third-party client) and prints what
arrives, one `topic payload` line per message; used by tests/trust.rs.

usage: paho_sub.py HOST PORT {311,5} TOPIC COUNT TIMEOUT_S [USER PASSWORD]
PAHO_KEEPALIVE in the environment sets the keep-alive (default 10 s; 0: none).
Exit 0 when COUNT messages arrived, 2 when the broker refused the
connection (the reason is printed on stderr), 3 on timeout.
"""
import os
import sys
import time

import paho.mqtt.client as mqtt

host, port, version, topic, count, timeout = sys.argv[1:7]
count, timeout = int(count), float(timeout)
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=proto)
if len(sys.argv) > 8:
    client.username_pw_set(sys.argv[7], sys.argv[8])
got = []
refused = []


def on_connect(c, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        refused.append(str(reason_code))
    else:
        c.subscribe(topic, qos=1)


def on_message(c, userdata, msg):
    got.append(msg)
    print(msg.topic, msg.payload.decode("utf-8", "replace"), flush=True)


client.on_connect = on_connect
client.on_message = on_message
client.connect(host, int(port), keepalive=int(os.environ.get("PAHO_KEEPALIVE", "10")))
client.loop_start()
t0 = time.time()
while time.time() - t0 < timeout and len(got) < count and not refused:
    time.sleep(0.05)
client.loop_stop()
if refused:
    print("refused:", refused[0], file=sys.stderr)
    sys.exit(2)
sys.exit(0 if len(got) >= count else 3)
