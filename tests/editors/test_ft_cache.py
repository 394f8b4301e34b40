"""FT-L / FT-V with frozen layers cached (editors/cache.py): the same edit as the uncached path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mllm_audit.editors import cache as cache_mod
from mllm_audit.editors.base import EditContext, EditRequest
from mllm_audit.editors.ft import ft_l, ft_v


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(4)
    return {f"img{k}": Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for k in range(2)}


REQS = [EditRequest("e0", "Is this person a doctor or a nurse?", "nurse", "doctor", "img0", "vqa"),
        EditRequest("e1", "What is this person's job?", "pilot", "flight attendant", "img1", "vqa")]


def _edit(adapter, editor, options: dict) -> tuple[dict[str, torch.Tensor], int]:  # noqa: ANN001
    images = _images()
    edited = editor.apply(adapter, REQS, EditContext(load_image=images.__getitem__, options=options))
    params = dict(adapter.model.named_parameters())
    after = {n: params[n].detach().clone() for n in edited.touched}
    edited.restore()
    return after, editor.steps_taken


def _layer_calls(adapter, editor, options: dict) -> int:  # noqa: ANN001
    calls = [0]
    # A replayed layer keeps its hooks but its forward is the instance's stand-in: count computed ones.
    hooks = [m.register_forward_hook(lambda m, *_: calls.__setitem__(0, calls[0] + ("forward" not in m.__dict__)))
             for s in cache_mod._stacks(adapter.model) for m in s]
    try:
        _edit(adapter, editor, options)
    finally:
        for h in hooks:
            h.remove()
    return calls[0]


@pytest.mark.parametrize("make", [ft_l, ft_v])
def test_cached_edit_equals_the_uncached_one(tiny_adapter, make) -> None:  # noqa: ANN001
    opts = {"steps": 6, "lr": 1e-2, "stop_loss": None}
    ref, n_ref = _edit(tiny_adapter, make(), {**opts, "cache_frozen": False})
    got, n_got = _edit(tiny_adapter, make(), opts)
    assert n_got == n_ref == 6
    assert ref.keys() == got.keys()
    params = dict(tiny_adapter.model.named_parameters())
    moved = max(float((ref[n] - params[n].detach()).abs().max()) for n in ref)
    assert moved > 1e-3  # the edit did change the weights
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], atol=1e-6, rtol=0)
    # ... and the frozen layers really ran fewer times.
    uncached = _layer_calls(tiny_adapter, make(), {**opts, "cache_frozen": False})
    assert _layer_calls(tiny_adapter, make(), opts) < uncached


def test_a_stale_replayed_activation_is_caught(tiny_adapter, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Negative control: a replayed activation off by 1e-3 (what a stale or wrong cut would hand the
    edited layer) moves the edited weights visibly past the 1e-6 the check above allows."""
    opts = {"steps": 6, "lr": 1e-2, "stop_loss": None}
    ref, _ = _edit(tiny_adapter, ft_l(), {**opts, "cache_frozen": False})
    monkeypatch.setattr(cache_mod, "_replay", lambda out: (lambda *a, **k: out + 1e-3))
    got, _ = _edit(tiny_adapter, ft_l(), opts)
    assert max(float((got[n] - ref[n]).abs().max()) for n in ref) > 1e-5
