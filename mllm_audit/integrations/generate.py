"""Greedy text generation for the harness bridges' `generate_until`: the one decoder in models/decode.py
(the adapter protocol's prefill and cached steps, the same prompt ids, image features and positions the
scores use), which `scan --greedy` decodes with too."""

from __future__ import annotations

from mllm_audit.models.decode import greedy_ids, greedy_text

__all__ = ["greedy_ids", "greedy_text"]
