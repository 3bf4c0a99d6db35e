"""Emotion-GCN for fer-edge."""

import os

# Official onnxruntime wheels send usage telemetry and keep a device id under
# ~/.cache/Microsoft unless this is set before they load (fer-edge sets it too).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
