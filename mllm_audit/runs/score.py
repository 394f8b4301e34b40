"""Scoring a suite's items in batches: the library function scan, fix, train-editor and the studies
share. An out-of-memory error reruns the batch at half the size (same numbers); images are checked
and loaded through the suite."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError
from mllm_audit.metrics.bias import sample_record
from mllm_audit.runs.greedy import DEFAULT_TOKENS
from mllm_audit.runs.writer import SAMPLE_SCHEMA
from mllm_audit.suites.items import Item, Suite, iter_image_refs, load_image

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter


def check_images(suite: Suite, items: list[Item]) -> None:
    """Fail fast, before the model loads, on an image path that is missing or escapes the suite."""
    for item in items:
        for rel in iter_image_refs(item):
            path = suite.image_path(rel)
            if not path.is_file():
                what = "not a regular file" if path.exists() else "image not found"
                raise AuditError(f"item {item.id!r}: {what}: {path}")


def check_threads(threads: int | None) -> None:
    """--threads: a positive count (None keeps torch's default), checked before torch is imported."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise AuditError(f"--threads must be a whole number of at least 1, got {threads!r}")


def image_loader(suite: Suite) -> Callable[[str], Any]:
    """Image keys in requests are the suite's relative paths."""
    return lambda rel: load_image(suite.image_path(rel))


def is_out_of_memory(err: BaseException) -> bool:
    """torch's OOM error types, or a RuntimeError that says so (older builds, other backends)."""
    import torch

    types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
                  if isinstance(t, type))
    return (bool(types) and isinstance(err, types)) or (isinstance(err, RuntimeError) and "out of memory" in str(err))


@dataclass
class BatchSize:
    """The batch size in force; halved on out-of-memory and kept low for the rest of the run."""

    size: int
    warned: bool = False

    def halve(self, err: BaseException) -> None:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if self.size <= 1:
            raise AuditError(
                f"out of memory even at batch size 1 ({first[:200]}); try --dtype bf16, --quantize or --device-map auto"
            )
        self.size = max(1, self.size // 2)
        _free_accelerator_memory()
        if not self.warned:
            self.warned = True
            print(f"mllm-audit: warning: out of memory; retrying with batch size {self.size} (scores are unaffected)",
                  file=sys.stderr, flush=True)


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def score_items(
    adapter: Adapter,
    suite: Suite,
    items: list[Item],
    run_id: str,
    batch_size: int | BatchSize = 16,
    on_progress: Callable[[int], None] | None = None,
    greedy: bool = False,
    greedy_tokens: int = DEFAULT_TOKENS,
) -> list[dict[str, Any]]:
    """Score y_more and y_less of each item; one sample record per item, in item order.

    An out-of-memory error reruns the call at half the batch size (the same numbers come out);
    progress is reported once per request even across a rerun. `greedy` also records each item's
    greedy answer: lm-eval's is_greedy over the pair, and the text decoded in at most `greedy_tokens`.
    """
    from mllm_audit.scoring.contract import score
    from mllm_audit.suites.requests import answer_pair

    sizer = batch_size if isinstance(batch_size, BatchSize) else BatchSize(batch_size)
    requests = [req for it in items for req in answer_pair(it)]
    reported = 0
    while True:
        done = 0

        def tick(n: int) -> None:
            nonlocal done, reported
            done += n
            if on_progress is not None and done > reported:
                on_progress(done - reported)
                reported = done

        oom: BaseException | None = None
        try:
            if greedy:  # one pass keeping each position's distribution: the scores and the greedy answers
                scores, flags = _scores_and_greedy(adapter, requests, image_loader(suite), sizer.size, tick)
            else:
                scores = score(adapter, requests, image_loader(suite), batch_size=sizer.size, on_progress=tick)
            from mllm_audit.util.guards import check_finite_scores

            check_finite_scores(adapter.model, [it.id for it in items for _ in (0, 1)], [s.logp for s in scores])
            break
        except RuntimeError as e:
            if not is_out_of_memory(e):
                raise
            oom = e
        sizer.halve(oom)  # outside the except block, so the failed batch's tensors can be freed
    samples = [
        sample_record(
            run_id, it, scores[2 * k].logp, scores[2 * k].n_tokens, scores[2 * k + 1].logp,
            scores[2 * k + 1].n_tokens, SAMPLE_SCHEMA,
        )
        for k, it in enumerate(items)
    ]
    _add_image_tokens(adapter, suite, requests[::2], samples)
    if greedy:
        from mllm_audit.metrics.greedy import greedy_answer
        from mllm_audit.runs.greedy import add_decoded_answers

        for k, rec in enumerate(samples):
            rec["greedy"] = greedy_answer(flags[2 * k], flags[2 * k + 1])
        add_decoded_answers(adapter, items, samples, image_loader(suite), greedy_tokens)
    return samples


def _scores_and_greedy(adapter: Adapter, requests: list[Any], load: Callable[[str], Any], batch_size: int,
                       tick: Callable[[int], None]) -> tuple[list[Any], list[bool]]:
    """The contract's scores and lm-eval's is_greedy per request from one pass that keeps the next-token
    distributions (scan --greedy), taken in slices so that at most 2 x batch_size [n, V] tensors are held.
    The score is the same gather over the same distribution the contract sums."""
    import torch

    from mllm_audit.metrics.greedy import is_greedy
    from mllm_audit.scoring.contract import Score, next_token_logprobs, tokenize_all

    joint = adapter.counters.joint_tokenization
    conts = [c for _, c in tokenize_all(adapter, requests)]  # the contract tokenises again: counted once, below
    adapter.counters.joint_tokenization = joint
    scores: list[Any] = []
    flags: list[bool] = []
    step = 2 * max(1, batch_size)
    for start in range(0, len(requests), step):
        part = requests[start : start + step]
        for d, cont in zip(next_token_logprobs(adapter, part, load, batch_size=batch_size),
                           conts[start : start + step], strict=True):
            lp = d.gather(-1, torch.tensor(cont, device=d.device).unsqueeze(-1)).squeeze(-1)
            scores.append(Score(float(lp.sum()), len(cont)))
            flags.append(is_greedy(d, cont))
        tick(len(part))
    return scores, flags


def _add_image_tokens(adapter: Adapter, suite: Suite, requests: list[Any], samples: list[dict[str, Any]]) -> None:
    """Each sample with an image records how many positions the image took: the family's fixed count, or
    what the processor made of this image (dynamic resolution: Qwen2-VL's pixel budget, tiles)."""
    count = getattr(adapter, "image_token_count", None)
    load = image_loader(suite) if count is not None else None
    for req, rec in zip(requests, samples, strict=True):
        if req.image is not None:
            rec["image_tokens"] = int(count(req, load(req.image)) if count is not None and load is not None
                                      else adapter.n_image_tokens)
