"""`scan`: score every item of a suite under a model and write the run folder.

Order of work is chosen so that bad input fails before anything slow happens: the suite is read
and validated and every image path checked before the model loads; `results.json` exists with
`complete: false` from the moment the folder is created and becomes `true` only at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AuditError
from .metrics import bias_summary, sample_record
from .report import RESULTS_SCHEMA, SAMPLE_SCHEMA, RunWriter, default_run_dir, new_run_id, versions
from .suites import Item, Suite, iter_image_refs, load_image, load_suite

if TYPE_CHECKING:
    from .models.base import Adapter

DEFAULT_MODEL = "toy"
DEFAULT_SUITE = "toy"


@dataclass
class ScanResult:
    run_dir: Path
    results: dict[str, Any]
    samples: list[dict[str, Any]]


def check_images(suite: Suite, items: list[Item]) -> None:
    """Fail fast, before the model loads, on an image path that is missing or escapes the suite."""
    for item in items:
        for rel in iter_image_refs(item):
            path = suite.image_path(rel)
            if not path.is_file():
                raise AuditError(f"item {item.id!r}: image not found: {path}")


def image_loader(suite: Suite) -> Callable[[str], Any]:
    """Image keys in requests are the suite's relative paths."""
    return lambda rel: load_image(suite.image_path(rel))


def score_items(
    adapter: Adapter,
    suite: Suite,
    items: list[Item],
    run_id: str,
    batch_size: int = 16,
    on_progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Score y_more and y_less of each item; one sample record per item, in item order."""
    from .scoring import Request, score

    requests = [
        Request(prompt=it.prompt, continuation=ans, image=it.image, task=it.task)
        for it in items
        for ans in (it.y_more, it.y_less)
    ]
    scores = score(adapter, requests, image_loader(suite), batch_size=batch_size, on_progress=on_progress)
    return [
        sample_record(
            run_id, it, scores[2 * k].logp, scores[2 * k].n_tokens, scores[2 * k + 1].logp,
            scores[2 * k + 1].n_tokens, SAMPLE_SCHEMA,
        )
        for k, it in enumerate(items)
    ]


def suite_extras(suite: Suite, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics a suite declares beyond the bias summary (parallel-image disparity)."""
    extras: dict[str, Any] = {}
    if suite.extra.get("disparity") == "pairs":
        from .disparity import disparity_summary

        extras["disparity"] = disparity_summary(samples)
    return extras


def run_scan(
    model: str = DEFAULT_MODEL,
    suite: str = DEFAULT_SUITE,
    data_dir: Path | None = None,
    output: Path | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    dtype: str = "fp32",
    device: str = "cpu",
    seed: int = 0,
    quantize: str | None = None,
    split: str | None = None,
    allow_outside_paths: bool = False,
    trust_remote_code: bool = False,
    adapter: Adapter | None = None,
    progress: Callable[[int, int], Callable[[int], None]] | None = None,
) -> ScanResult:
    """Scan `suite` under `model`; returns the run folder, results and samples.

    `progress(total)` may return a callback that receives the number of requests done per batch.
    `adapter` lets callers (tests, `fix`) reuse an already loaded model.
    """
    t0 = time.perf_counter()
    if batch_size < 1:
        raise AuditError(f"--batch-size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise AuditError(f"--limit must be at least 1, got {limit}")
    the_suite = load_suite(suite, data_dir=data_dir, allow_outside_paths=allow_outside_paths)
    items = the_suite.select(split=split, limit=limit)
    if not items:
        raise AuditError(f"suite {the_suite.name!r} has no items in split {split!r}")
    check_images(the_suite, items)

    import torch

    from .models import load_model
    from .models.base import LoadOptions

    torch.manual_seed(seed)
    if adapter is None:
        opts = LoadOptions(dtype=dtype, device=device, quantize=quantize, trust_remote_code=trust_remote_code)
        adapter = load_model(model, opts)
    t_loaded = time.perf_counter()
    run_id = new_run_id()
    out_dir = Path(output) if output is not None else default_run_dir("scan", adapter.card.name, the_suite.name)
    group_by = the_suite.extra.get("group_by")
    results: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        "command": "scan",
        "run_id": run_id,
        "complete": False,
        "model": adapter.identity(),
        "suite": the_suite.identity(),
        "versions": versions(),
        "seed": seed,
        "options": {"batch_size": batch_size, "limit": limit, "split": split, "device": device},
        "group_by": group_by,
    }
    counters_before = adapter.counters.as_dict()
    with RunWriter(out_dir, run_id) as writer:
        writer.write_results(results)
        tick = progress(2 * len(items)) if progress else None
        samples = score_items(adapter, the_suite, items, run_id, batch_size, on_progress=tick)
        writer.append(samples)
        t_scored = time.perf_counter()
        after = adapter.counters.as_dict()
        results.update(
            {
                "complete": True,
                "timings": {
                    "load_s": round(t_loaded - t0, 4),
                    "scoring_s": round(t_scored - t_loaded, 4),
                    "total_s": round(time.perf_counter() - t0, 4),
                },
                "counters": {k: after[k] - counters_before[k] for k in after},
                "summary": bias_summary(samples, group_by),
                **suite_extras(the_suite, samples),
            }
        )
        writer.write_results(results)
    return ScanResult(run_dir=out_dir, results=results, samples=samples)
