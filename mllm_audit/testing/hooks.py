"""Test hooks the run code reads, kept here so that run code holds no test-only knobs of its own."""

from __future__ import annotations

import os

# Seconds to sleep after each scored chunk: lets a test kill a scan mid-run to check resume.
CHUNK_DELAY_ENV = "MLLM_AUDIT_CHUNK_DELAY"


def chunk_delay() -> float:
    return float(os.environ.get(CHUNK_DELAY_ENV) or 0)
