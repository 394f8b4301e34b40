"""MiniGPT-4: original-layout checkpoints at tiny sizes convert, and the composed model's scores equal a
reference forward written here over the original layout (EVA blocks, BERT Q-Former, llama_proj)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from family_checks import check_invariance, images, requests
from PIL import Image

from mllm_audit.errors import AuditError
from mllm_audit.models import load_model
from mllm_audit.models.convert.minigpt4 import convert_minigpt4
from mllm_audit.scoring.contract import Request, continuation_text, score
from mllm_audit.testing.tiny import llama_config

V, Q, T, HEADS, PATCH, GRID, NQ, FFN = 32, 32, 64, 4, 8, 4, 4, 64
EVA_BLOCKS, Q_LAYERS = 40, 2  # EVA-CLIP-g's 40 blocks; the converter keeps 39, as LAVIS does
KEPT = 39


def _rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
    return torch.randn(*shape) * scale


def _ln(prefix: str, n: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": 1 + _rand(n, scale=0.1), f"{prefix}.bias": _rand(n, scale=0.1)}


def _lin(prefix: str, out: int, inp: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": _rand(out, inp), f"{prefix}.bias": _rand(out, scale=0.05)}


def original_checkpoints(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Tiny state dicts under the original key names, saved as the release's .pth files."""
    torch.manual_seed(seed)
    eva = {
        "cls_token": _rand(1, 1, V),
        "pos_embed": _rand(1, GRID * GRID + 1, V),
        "patch_embed.proj.weight": _rand(V, 3, PATCH, PATCH, scale=0.05),
        "patch_embed.proj.bias": _rand(V),
        "head.weight": _rand(10, V),
    }  # a classifier head MiniGPT-4 never uses
    for i in range(EVA_BLOCKS):
        b = f"blocks.{i}"
        eva |= _ln(f"{b}.norm1", V) | _ln(f"{b}.norm2", V) | _lin(f"{b}.attn.proj", V, V)
        eva |= {
            f"{b}.attn.qkv.weight": _rand(3 * V, V),
            f"{b}.attn.q_bias": _rand(V),
            f"{b}.attn.v_bias": _rand(V),
        }
        eva |= _lin(f"{b}.mlp.fc1", FFN, V) | _lin(f"{b}.mlp.fc2", V, FFN)
    qf = {
        "query_tokens": _rand(1, NQ, Q),
        "Qformer.bert.embeddings.word_embeddings.weight": _rand(50, Q),
        "Qformer.bert.embeddings.position_embeddings.weight": _rand(64, Q),
        "Qformer.bert.embeddings.position_ids": torch.arange(64).unsqueeze(0),
        "Qformer.cls.predictions.bias": _rand(50),
        "t5_proj.weight": _rand(16, Q),
    }
    qf |= _ln("ln_vision", V) | _ln("Qformer.bert.embeddings.LayerNorm", Q)
    for i in range(Q_LAYERS):
        b = f"Qformer.bert.encoder.layer.{i}"
        for part, width in [("attention", Q)] + ([("crossattention", V)] if i % 2 == 0 else []):
            qf |= _lin(f"{b}.{part}.self.query", Q, Q) | _lin(f"{b}.{part}.self.key", Q, width)
            qf |= _lin(f"{b}.{part}.self.value", Q, width) | _lin(f"{b}.{part}.output.dense", Q, Q)
            qf |= _ln(f"{b}.{part}.output.LayerNorm", Q)
        for branch in ("", "_query"):  # the text branch (no suffix) is unused by MiniGPT-4
            qf |= _lin(f"{b}.intermediate{branch}.dense", FFN, Q) | _lin(f"{b}.output{branch}.dense", Q, FFN)
            qf |= _ln(f"{b}.output{branch}.LayerNorm", Q)
    proj = _lin("llama_proj", T, Q)
    paths = {
        "vit": folder / "eva_vit_g.pth",
        "qformer": folder / "blip2_pretrained_flant5xxl.pth",
        "proj": folder / "pretrained_minigpt4.pth",
    }
    torch.save(eva, paths["vit"])
    torch.save({"model": qf}, paths["qformer"])
    torch.save(release_layout(proj), paths["proj"])
    paths["llama"] = save_vicuna(folder / "vicuna")
    return paths


def release_layout(proj: dict[str, torch.Tensor]) -> dict[str, object]:
    """The projection as MiniGPT-4's runner saves it: every buffer of the model beside the trained
    weights under `model`, and the optimizer, scaler, config and epoch next to it."""
    model = dict(proj)
    model["Qformer.bert.embeddings.position_ids"] = torch.arange(32).unsqueeze(0)
    for i in range(2):
        model[f"llama_model.model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.rand(8)
    return {
        "model": model,
        "optimizer": {
            "state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(T, Q), "exp_avg_sq": torch.zeros(T, Q)}},
            "param_groups": [{"lr": 3e-5, "betas": (0.9, 0.999), "weight_decay": 0.05, "params": [0, 1]}],
        },
        "config": {"model": {"arch": "mini_gpt4", "freeze_vit": True}, "run": {"max_epoch": 5}},
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "_growth_tracker": 12},
        "epoch": 4,
    }


def save_vicuna(out: Path) -> Path:
    from transformers import LlamaForCausalLM

    from mllm_audit.testing.tiny import build_tokenizer

    tok = build_tokenizer(corpus=["###Human: <Img><ImageHere></Img> ###Assistant:", *requests_text()])
    torch.manual_seed(1)
    LlamaForCausalLM(llama_config(len(tok), hidden=T)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def requests_text() -> list[str]:
    from family_checks import PROMPTS, WORDS

    return [" ".join(PROMPTS + WORDS)]


# ---- the reference: MiniGPT-4's forward over the original layout ---------------------------------


def _mha(x: torch.Tensor, kv: torch.Tensor, sd: dict, p: str, heads: int) -> torch.Tensor:
    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)

    q = split(F.linear(x, sd[f"{p}.query.weight"], sd[f"{p}.query.bias"]))
    k = split(F.linear(kv, sd[f"{p}.key.weight"], sd[f"{p}.key.bias"]))
    v = split(F.linear(kv, sd[f"{p}.value.weight"], sd[f"{p}.value.bias"]))
    att = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1) @ v
    return att.transpose(1, 2).reshape(x.shape)


def _layer_norm(x: torch.Tensor, sd: dict, p: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"], eps)


@functools.lru_cache(maxsize=2)
def _load_originals(vit: Path, qformer: Path, proj: Path) -> tuple[dict, dict, dict]:
    return (
        torch.load(vit, weights_only=True),
        torch.load(qformer, weights_only=True)["model"],
        torch.load(proj, weights_only=True)["model"],
    )


@functools.lru_cache(maxsize=2)
def _load_vicuna(path: Path):  # noqa: ANN202 - (tokenizer, model)
    from transformers import AutoTokenizer, LlamaForCausalLM

    return AutoTokenizer.from_pretrained(path), LlamaForCausalLM.from_pretrained(path).eval()


def reference_image_embeds(paths: dict[str, Path], pixels: torch.Tensor) -> torch.Tensor:
    eva, qf, proj = _load_originals(paths["vit"], paths["qformer"], paths["proj"])
    x = F.conv2d(pixels, eva["patch_embed.proj.weight"], eva["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([eva["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + eva["pos_embed"]
    for i in range(KEPT):
        b = f"blocks.{i}"
        h = _layer_norm(x, eva, f"{b}.norm1", 1e-6)
        bias = torch.cat([eva[f"{b}.attn.q_bias"], torch.zeros(V), eva[f"{b}.attn.v_bias"]])
        qkv = F.linear(h, eva[f"{b}.attn.qkv.weight"], bias).view(x.shape[0], x.shape[1], 3, HEADS, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = (torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1) @ v).transpose(1, 2)
        x = x + F.linear(att.reshape(x.shape), eva[f"{b}.attn.proj.weight"], eva[f"{b}.attn.proj.bias"])
        h = F.gelu(
            F.linear(
                _layer_norm(x, eva, f"{b}.norm2", 1e-6), eva[f"{b}.mlp.fc1.weight"], eva[f"{b}.mlp.fc1.bias"]
            )
        )
        x = x + F.linear(h, eva[f"{b}.mlp.fc2.weight"], eva[f"{b}.mlp.fc2.bias"])
    img = _layer_norm(x, qf, "ln_vision", 1e-5)
    h = _layer_norm(
        qf["query_tokens"].expand(x.shape[0], -1, -1), qf, "Qformer.bert.embeddings.LayerNorm", 1e-12
    )
    for i in range(Q_LAYERS):
        b = f"Qformer.bert.encoder.layer.{i}"
        for part, kv in [("attention", None)] + ([("crossattention", img)] if i % 2 == 0 else []):
            a = _mha(h, h if kv is None else kv, qf, f"{b}.{part}.self", HEADS)
            a = F.linear(a, qf[f"{b}.{part}.output.dense.weight"], qf[f"{b}.{part}.output.dense.bias"])
            h = _layer_norm(a + h, qf, f"{b}.{part}.output.LayerNorm", 1e-12)
        f = F.gelu(
            F.linear(h, qf[f"{b}.intermediate_query.dense.weight"], qf[f"{b}.intermediate_query.dense.bias"])
        )
        f = F.linear(f, qf[f"{b}.output_query.dense.weight"], qf[f"{b}.output_query.dense.bias"])
        h = _layer_norm(f + h, qf, f"{b}.output_query.LayerNorm", 1e-12)
    return F.linear(h, proj["llama_proj.weight"], proj["llama_proj.bias"])


def reference_pixels(image: Image.Image) -> torch.Tensor:
    """MiniGPT-4's eval transform: bicubic resize, [0, 1], CLIP mean/std."""
    arr = np.asarray(image.convert("RGB").resize((GRID * PATCH,) * 2, Image.BICUBIC), dtype=np.float32) / 255
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
    return torch.from_numpy(((arr - mean) / std).astype(np.float32)).permute(2, 0, 1).unsqueeze(0)


_EMBEDS: dict[tuple[Path, str], torch.Tensor] = {}


def reference_score(paths: dict[str, Path], req: Request, imgs: dict) -> float:
    tok, lm = _load_vicuna(paths["llama"])
    text = "###Human: <Img><ImageHere></Img> " + req.prompt + " ###Assistant:"
    cont = tok(continuation_text(req.continuation), add_special_tokens=False).input_ids
    emb = lm.get_input_embeddings()
    if req.image is None:
        ids = tok(text.replace("<Img><ImageHere></Img> ", "")).input_ids
        parts = [emb(torch.tensor([ids + cont]))]
        n_ctx = len(ids)
    else:
        before, after = text.split("<ImageHere>")
        head, tail = tok(before).input_ids, tok(after, add_special_tokens=False).input_ids
        key = (paths["vit"], req.image)
        if key not in _EMBEDS:  # one reference forward per image: 39 EVA blocks in Python are slow
            _EMBEDS[key] = reference_image_embeds(paths, reference_pixels(imgs[req.image]))
        image = _EMBEDS[key]
        parts = [emb(torch.tensor([head])), image, emb(torch.tensor([tail + cont]))]
        n_ctx = len(head) + NQ + len(tail)
    with torch.no_grad():
        logits = lm(inputs_embeds=torch.cat(parts, dim=1)).logits[0]
    logp = torch.log_softmax(logits[n_ctx - 1 : -1], dim=-1)
    return float(logp.gather(-1, torch.tensor(cont).unsqueeze(-1)).sum())


# ---- tests -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return original_checkpoints(tmp_path_factory.mktemp("minigpt4-orig"))


@pytest.fixture(scope="module")
def converted(originals: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("minigpt4") / "converted"
    return convert_minigpt4(**originals, out=out, vision_heads=HEADS, qformer_heads=HEADS)


@pytest.fixture(scope="module")
def adapter(converted: Path):  # noqa: ANN201 - an Adapter
    return load_model(str(converted))


def test_converted_folder_loads_by_path(converted: Path, adapter) -> None:  # noqa: ANN001
    import json

    cfg = json.loads((converted / "config.json").read_text())
    assert cfg["model_type"] == "minigpt4" and cfg["num_query_tokens"] == NQ
    assert cfg["vision_config"]["num_hidden_layers"] == KEPT
    assert any(p.suffix == ".safetensors" for p in converted.iterdir())
    assert adapter.card.family == "minigpt4"


def test_scores_equal_reference_over_original_layout(originals, adapter) -> None:  # noqa: ANN001
    imgs = images(3)
    reqs = requests(12, imgs, seed=4)
    reqs = [Request(r.prompt, r.continuation, r.image) for r in reqs]  # the default template, no task
    got = score(adapter, reqs, imgs.__getitem__, batch_size=4)
    worst = max(abs(s.logp - reference_score(originals, r, imgs)) for r, s in zip(reqs, got, strict=True))
    assert worst < 1e-5, worst


def test_invariant_to_batch_padding_and_order(adapter) -> None:  # noqa: ANN001
    check_invariance(adapter)


def test_prompt_layout(adapter) -> None:  # noqa: ANN001
    ids = adapter.prompt_ids("Is it?", None, with_image=True)
    assert ids.count(adapter.image_token_id) == NQ
    assert ids[0] == adapter.tokenizer.bos_token_id
    assert adapter.image_token_id >= adapter.model.config.text_config.vocab_size  # never a real token
    assert (
        adapter.tokenizer.decode(
            adapter.prompt_ids("Is it?", None, with_image=False), skip_special_tokens=True
        )
        == "###Human: Is it? ###Assistant:"
    )


def test_unexpected_and_missing_keys_are_named(originals, tmp_path: Path) -> None:  # noqa: ANN001
    sd = torch.load(originals["proj"], weights_only=True)["model"]
    bad = tmp_path / "extra.pth"
    torch.save({"model": sd | {"llama_proj.gamma": torch.zeros(1)}}, bad)
    with pytest.raises(AuditError, match="unexpected key 'llama_proj.gamma'"):
        convert_minigpt4(
            **(originals | {"proj": bad}), out=tmp_path / "o", vision_heads=HEADS, qformer_heads=HEADS
        )
    torch.save({"model": {"llama_proj.weight": sd["llama_proj.weight"]}}, bad)
    with pytest.raises(AuditError, match="missing key 'llama_proj.bias'"):
        convert_minigpt4(
            **(originals | {"proj": bad}), out=tmp_path / "o", vision_heads=HEADS, qformer_heads=HEADS
        )


def test_release_layout_buffers_and_training_state_ignored(originals) -> None:  # noqa: ANN001
    from mllm_audit.models.convert.minigpt4 import read_checkpoint

    raw = torch.load(originals["proj"], weights_only=True)
    assert {"optimizer", "scaler", "epoch", "config"} <= set(raw)  # the fixture is the release layout
    assert any(k.endswith("inv_freq") for k in raw["model"]) and any(k.endswith("position_ids") for k in raw["model"])
    assert sorted(read_checkpoint(originals["proj"], "proj")) == ["llama_proj.bias", "llama_proj.weight"]


def test_vit_depth_is_39_and_fewer_blocks_refused(originals, tmp_path: Path) -> None:  # noqa: ANN001
    eva = torch.load(originals["vit"], weights_only=True)
    assert 1 + max(int(k.split(".")[1]) for k in eva if k.startswith("blocks.")) == 40

    def blocks(n: int) -> Path:
        path = tmp_path / f"eva{n}.pth"
        torch.save({k: v for k, v in eva.items() if not k.startswith("blocks.") or int(k.split(".")[1]) < n}, path)
        return path

    import json

    # A file with exactly 39 blocks keeps all 39 (the old rule, "blocks minus one", kept 38).
    out = convert_minigpt4(
        **(originals | {"vit": blocks(39)}), out=tmp_path / "o39", vision_heads=HEADS, qformer_heads=HEADS
    )
    assert json.loads((out / "config.json").read_text())["vision_config"]["num_hidden_layers"] == KEPT
    with pytest.raises(AuditError, match="the EVA checkpoint has 38 blocks; MiniGPT-4 runs 39"):
        convert_minigpt4(
            **(originals | {"vit": blocks(38)}), out=tmp_path / "o38", vision_heads=HEADS, qformer_heads=HEADS
        )


def test_pickled_code_is_refused(originals, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "evil.pth"
    torch.save({"model": {"llama_proj.weight": torch.zeros(1)}, "extra": object()}, bad)
    with pytest.raises(AuditError, match="weights_only"):
        convert_minigpt4(
            **(originals | {"proj": bad}), out=tmp_path / "o", vision_heads=HEADS, qformer_heads=HEADS
        )


def test_cli_convert(originals, tmp_path: Path) -> None:  # noqa: ANN001
    from mllm_audit.cli import run

    out = tmp_path / "cli-out"
    args = [
        "convert",
        "minigpt4",
        "--vit",
        str(originals["vit"]),
        "--qformer",
        str(originals["qformer"]),
        "--proj",
        str(originals["proj"]),
        "--llama",
        str(originals["llama"]),
        "--output",
        str(out),
        "--vision-heads",
        str(HEADS),
        "--qformer-heads",
        str(HEADS),
    ]
    assert run(args) == 0
    assert (out / "config.json").is_file()
    assert run(args[:3] + ["/nonexistent.pth"] + args[4:]) == 2


def test_cards() -> None:
    from mllm_audit.models import resolve_card

    for name in ("minigpt4", "minigpt4-13b"):
        card = resolve_card(name)
        assert card.family == "minigpt4" and "llama_proj" in card.keep_fp32
        assert "<ImageHere>" in card.template("vqa")


def test_converted_folder_carries_the_family_card_and_prompts_like_it(converted: Path) -> None:
    """`convert --output` writes the released card's templates into the folder (issue 18): before, the
    folder had none and `--model OUT` prompted with the bare default template."""
    import yaml

    from mllm_audit.models.cards import FOLDER_CARD, read_card, registered_cards, resolve_card

    saved = yaml.safe_load((converted / FOLDER_CARD).read_text())
    released = read_card(registered_cards()["minigpt4"])
    assert saved["templates"] == released.templates and saved["weights"] == "." and saved["edit"] == {}
    assert resolve_card(str(converted)).templates == released.templates


def test_convert_never_overwrites(originals, converted: Path) -> None:  # noqa: ANN001
    from mllm_audit.errors import AuditError

    before = sorted(p.name for p in converted.iterdir())
    with pytest.raises(AuditError, match="--output"):
        convert_minigpt4(**originals, out=converted, vision_heads=HEADS, qformer_heads=HEADS)
    assert sorted(p.name for p in converted.iterdir()) == before
