"""Emotion-GCN for fer-edge."""
