"""Leaf helpers every layer may use: user text, numeric option checks, guards that name a culprit,
YAML/JSONL reading and atomic writes, shipped resources, terminal feedback.
"""
