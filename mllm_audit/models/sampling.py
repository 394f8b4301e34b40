"""Image-token sampling whose every image is independent of how rows are batched.

transformers' `generate` draws each step with `torch.multinomial` on the global generator (as the
Janus repos do): a batch's images then depend on which rows share it, so prompts cannot be batched
together without changing them. The `per-image` sampler gives each row its own uniforms, drawn up
front from a `torch.Generator` seeded with that image's seed, and takes the token by inverse CDF over
the row's final probabilities (after every processor transformers builds: CFG, temperature, top-k,
top-p, prefix constraints). It hands `generate` scores that are 0 at the drawn token and -inf elsewhere,
so `generate`'s own multinomial or argmax can only pick that token: same distribution as upstream,
a different (per-image) random stream. Rows batch together token for token the same as alone (up to
the logits' float rounding across batch shapes, which moves a draw only if its uniform falls within
rounding of a CDF boundary).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import LogitsProcessor


class InverseCdfSampler(LogitsProcessor):
    """Draws row i's token at step t as the first index whose CDF exceeds u[i, t] (one generator per row)."""

    def __init__(self, seeds: list[int], steps: int) -> None:
        self.uniforms = torch.stack(
            [torch.rand(steps, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64) for s in seeds])
        self.step = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != self.uniforms.shape[0]:
            raise ValueError(f"{scores.shape[0]} rows of scores for {self.uniforms.shape[0]} seeded rows")
        if self.step >= self.uniforms.shape[1]:
            raise ValueError(f"more than the {self.uniforms.shape[1]} steps drawn for")
        cdf = torch.softmax(scores.float(), dim=-1).double().cumsum(-1)
        u = self.uniforms[:, self.step].to(cdf.device).unsqueeze(-1) * cdf[:, -1:]
        token = torch.searchsorted(cdf, u, right=True).clamp_max(cdf.shape[-1] - 1)
        self.step += 1
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token, 0.0)


@contextmanager
def per_image_sampling(model: Any, seeds: list[int], steps: int) -> Iterator[InverseCdfSampler]:
    """Within this block, `model.generate` draws with an `InverseCdfSampler` appended after the
    processors transformers builds (only when the config samples: greedy stays argmax)."""
    sampler = InverseCdfSampler(seeds, steps)
    own = model.__dict__.get("_get_logits_processor")  # a wrapper already set on the instance stays
    original = model._get_logits_processor

    def with_sampler(*args: Any, **kwargs: Any) -> Any:
        procs = original(*args, **kwargs)
        cfg = kwargs.get("generation_config", args[0] if args else None)
        if cfg is not None and cfg.do_sample:
            procs.append(sampler)
        return procs

    model._get_logits_processor = with_sampler
    try:
        yield sampler
    finally:
        if own is None:
            del model._get_logits_processor
        else:
            model._get_logits_processor = own


# Images are VQ-decoded this many at a time, the last block padded by repeating its last row: the
# decoder's convolutions round differently by batch shape (one pixel level on 15 of 60 toy images
# decoded 32 at a time against one at a time), never by a row's neighbours in a block of fixed shape.
DECODE_ROWS = 8


def seeded_generate(model: Any, kw: dict[str, Any], seed: int, row_seeds: list[int] | None, steps: int) -> Any:
    """`model.generate(**kw)` drawn as every image family draws: from the global generator seeded with
    `seed` (upstream's draw), or with `row_seeds` each row from its own (per_image_sampling above)."""
    if row_seeds is None:
        torch.manual_seed(seed)
        return model.generate(**kw)
    with per_image_sampling(model, row_seeds, steps):
        return model.generate(**kw)


def _decode(adapter: Any, block: list[torch.Tensor]) -> list[Any]:
    n = len(block)
    return list(adapter.decode_images(torch.stack(block + block[-1:] * (DECODE_ROWS - n)))[:n])


def decode_in_blocks(adapter: Any, codes: Any) -> list[Any]:
    """Images of image-token rows, decoded `DECODE_ROWS` at a time as gen-scan decodes them: the same pixels
    for the same codes (the decoder's rounding depends on its batch shape), and memory bounded by the block."""
    rows = list(codes)
    return [im for i in range(0, len(rows), DECODE_ROWS) for im in _decode(adapter, rows[i : i + DECODE_ROWS])]


def generate_rows(adapter: Any, rows: list[tuple[str, int]], batch_size: int) -> Iterator[list[Any]]:
    """Images for (prompt, seed) rows, in order: `batch_size` rows per `generate` whatever their prompts,
    decoded in blocks of `DECODE_ROWS`; yields images as they are decoded. Under the per-image sampler
    an image is the same (tokens and pixels) for any batch size and any rows around it."""
    step = max(1, batch_size)
    pending: list[torch.Tensor] = []
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        pending.extend(adapter.generate_tokens([p for p, _ in part], 0, row_seeds=[s for _, s in part]))
        while len(pending) >= DECODE_ROWS:
            yield _decode(adapter, pending[:DECODE_ROWS])
            pending = pending[DECODE_ROWS:]
    if pending:
        yield _decode(adapter, pending)
