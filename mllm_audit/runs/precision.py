"""What a reduced precision cost: a sample of items re-scored in fp32, compared with the run's scores.

`--dtype bf16` (or fp16) runs the model in that precision; the scoring contract still takes the
log-softmax in fp32. The weights and activations are rounded all the same, so the run records the
drift (|logp - logp_fp32| over both answers of each sampled item) and the flips (items whose
preferred answer, the sign of the margin, changes) against an fp32 pass over the same weights
upcast in place (exact: every bf16/fp16 value is an fp32 value, and casting back restores them bit
for bit). That is the arithmetic's cost; where the checkpoint stores wider weights than the run
uses, their rounding is a further cost this pass does not see, and the record says so
(`weights_stored`, `not_included`). Quantized models are not checked (no in-place upcast).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mllm_audit.runs.score import BatchSize, is_out_of_memory, score_items

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter
    from mllm_audit.suites.items import Item, Suite

DRIFT_SAMPLE = 16  # items re-scored in fp32


@contextmanager
def upcast(adapter: Adapter) -> Iterator[None]:
    """The model in fp32 for the duration; every parameter and buffer gets its own dtype back after."""
    import torch

    tensors = [*adapter.model.parameters(), *adapter.model.buffers()]
    dtypes = [t.dtype for t in tensors]
    old = adapter.options.dtype
    try:
        for t in tensors:
            if t.is_floating_point():
                t.data = t.data.float()
        adapter.options.dtype = "fp32"
        yield
    finally:
        adapter.options.dtype = old
        with torch.no_grad():
            for t, d in zip(tensors, dtypes, strict=True):
                if t.dtype != d:
                    t.data = t.data.to(d)


def precision_check(
    adapter: Adapter, suite: Suite, items: Sequence[Item], samples: Sequence[dict[str, Any]], seed: int,
    batch_size: int,
) -> dict[str, Any] | None:
    """Drift and flips of the run's scores against fp32 on up to DRIFT_SAMPLE items (seeded); None in fp32."""
    if adapter.options.dtype == "fp32" or adapter.options.quantize:
        return None
    by_id = {s["item_id"]: s for s in samples}
    have = [it for it in items if it.id in by_id]
    if not have:
        return None
    picked = sorted(random.Random(seed).sample(range(len(have)), min(DRIFT_SAMPLE, len(have))))
    sample = [have[i] for i in picked]
    out: dict[str, Any] = {"dtype": adapter.options.dtype, "reference": "fp32 arithmetic on the same weights",
                           "n_items": len(sample), "item_ids": [it.id for it in sample]}
    stored = _stored_dtype(adapter)
    if stored is not None:
        out["weights_stored"] = stored
        run_dtype = str(adapter.dtype).removeprefix("torch.")
        if stored != run_dtype:  # fp32 weights rounded to bf16, or bf16 weights to fp16: lossy either way
            out["not_included"] = f"the rounding of the {stored} checkpoint weights to {adapter.options.dtype}"
    if any(p.device.type == "meta" for p in adapter.model.parameters()):
        return {**out, "skipped": "weights offloaded (device map): no in-place fp32 copy"}
    try:
        with upcast(adapter):
            ref = score_items(adapter, suite, sample, "fp32-reference", BatchSize(batch_size))
    except RuntimeError as e:
        if not is_out_of_memory(e):
            raise
        return {**out, "skipped": "out of memory holding an fp32 copy of the weights"}
    drift = [abs(by_id[r["item_id"]][k] - r[k]) for r in ref for k in ("logp_more", "logp_less")]
    flipped = [r["item_id"] for r in ref if (by_id[r["item_id"]]["margin"] > 0) != (r["margin"] > 0)]
    return {**out, "max_abs_drift": max(drift), "mean_abs_drift": sum(drift) / len(drift),
            "flips": len(flipped), "flipped": flipped}


def _stored_dtype(adapter: Adapter) -> str | None:
    """The checkpoint's weight dtype as its config.json states it (`dtype`, formerly `torch_dtype`);
    None for a hub id or a config that does not say."""
    import json
    from pathlib import Path

    path = Path(adapter.card.weights) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    d = cfg.get("dtype") or cfg.get("torch_dtype") or (cfg.get("text_config") or {}).get("dtype")
    return str(d) if isinstance(d, str) else None
