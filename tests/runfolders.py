"""A run folder in the real sample/results format, built without a model (gate, compare, report tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mllm_audit.metrics.bias import bias_summary, sample_record
from mllm_audit.runs.writer import RESULTS_SCHEMA, SAMPLE_SCHEMA
from mllm_audit.suites.items import Item
from mllm_audit.util.files import atomic_write_json

Row = tuple[str, str, str, float, dict]  # item_id, bias_type, cluster, margin, meta


def rows(bias_type: str, n: int, biased: set[int], meta: dict | None = None, per_cluster: int = 2
         ) -> list[Row]:
    """n items of one bias type; those in `biased` get margin +1, the rest -1."""
    return [
        (f"{bias_type}-{i}", bias_type, f"{bias_type}-img{i // per_cluster}", 1.0 if i in biased else -1.0,
         dict(meta or {}))
        for i in range(n)
    ]


def make_run(folder: Path, items: list[Row], group_by: str | None = None, complete: bool = True,
             suite: str = "toy", extra: dict[str, Any] | None = None) -> Path:
    """A run folder in the real format: samples via metrics.sample_record, summary via bias_summary."""
    samples = []
    for item_id, bias_type, cluster, margin, meta in items:
        item = Item(id=item_id, task="vqa", bias_type=bias_type, image=f"{cluster}.png", prompt="q?",
                    y_more="a", y_less="b", meta=meta, cluster=cluster)
        samples.append(sample_record("r1", item, -4.0 + margin, 1, -4.0, 1, SAMPLE_SCHEMA))
    folder.mkdir(parents=True)
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    results = {
        "schema": RESULTS_SCHEMA, "command": "scan", "run_id": "r1", "complete": complete,
        "model": {"name": "tiny", "source": "test", "revision": None, "family": "blip2", "dtype": "fp32",
                  "quantization": None},
        "suite": {"name": suite, "source": "test", "content_hash": "abc", "n_items": len(samples),
                  "kind": "likelihood"},
        "versions": {}, "seed": 0, "timings": {}, "counters": {}, "group_by": group_by,
        "summary": bias_summary(samples, group_by),
        **(extra or {}),
    }
    atomic_write_json(folder / "results.json", results)
    return folder
