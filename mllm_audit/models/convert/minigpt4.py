"""`mllm-audit convert minigpt4`: the original release files -> one safetensors folder in transformers' layout.

Maps EVA `eva_vit_g.pth`, LAVIS `blip2_pretrained_flant5xxl.pth`, `pretrained_minigpt4*.pth` and a Vicuna
HF folder onto models/families/minigpt4.py's `MiniGPT4ForConditionalGeneration` (`model_type: minigpt4`).
Original files are read with `torch.load(weights_only=True)` only: never unpickled as code.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2VisionConfig, LlamaForCausalLM

from mllm_audit.errors import AuditError
from mllm_audit.models.families.minigpt4 import MiniGPT4Config, MiniGPT4ForConditionalGeneration

# Keys of the original files that MiniGPT-4 itself never uses (it loads them with strict=False).
_IGNORED_VIT = re.compile(r"^(norm|fc_norm|head)\.")


_IGNORED_QFORMER = re.compile(
    r"^(Qformer\.cls\.|Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings|position_ids)"
    r"|Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\."
    r"|(t5|opt)_(proj|model)\.|vision_proj\.|text_proj\.|itm_head\.|temp$)"
)


_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


_VIT_BLOCK_NAMES = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.qkv": "self_attn.qkv",
    "attn.q_bias": "self_attn.q_bias",
    "attn.v_bias": "self_attn.v_bias",
    "attn.proj": "self_attn.projection",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


_VIT_TOP = {
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
    "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
}


# Buffers the original modules register and MiniGPT-4's runner saves beside the weights (its
# `_save_checkpoint` drops frozen parameters, never buffers): rebuilt by the model, so never read.
_BUFFER = re.compile(r"(^|\.)(position_ids|inv_freq)$")


# EVA-CLIP-g has 40 blocks; LAVIS and MiniGPT-4 build it with depth 39 and read the 39th's output.
EVA_DEPTH = 39


def read_checkpoint(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from an original .pth (weights_only), unwrapped from {"model": ...}.

    Entries that are not tensors (a training run's `optimizer`, `scaler`, `epoch`, `config` beside
    `model`, or stray values inside it) are dropped; buffers (`*position_ids`, `*inv_freq`) too.
    """
    if not Path(path).is_file():
        raise AuditError(f"{what} checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - pickle errors come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AuditError(f"{what} checkpoint {path}: unreadable with weights_only=True ({first})") from None
    for key in ("model", "state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    tensors = (
        {k: v for k, v in obj.items() if isinstance(v, torch.Tensor) and not _BUFFER.search(str(k))}
        if isinstance(obj, dict)
        else {}
    )
    if not tensors:
        raise AuditError(f"{what} checkpoint {path}: holds no weight tensors")
    return tensors


def _vit_name(key: str, depth: int) -> str | None:
    """transformers name for an EVA key; None for keys MiniGPT-4 drops; raises for unknown ones."""
    if key in _VIT_TOP:
        return "vision_model." + _VIT_TOP[key]
    m = _BLOCK.match(key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        if i >= depth:
            return None  # LAVIS builds depth 39 of EVA's 40 blocks: the 40th is never run
        for old, new in _VIT_BLOCK_NAMES.items():
            if rest == old or rest.startswith(old + "."):
                return f"vision_model.encoder.layers.{i}.{new}{rest[len(old) :]}"
    if _IGNORED_VIT.match(key):
        return None
    raise KeyError(key)


def _qformer_name(key: str) -> str | None:
    if key in ("query_tokens", "ln_vision.weight", "ln_vision.bias"):
        return key
    if key == "Qformer.bert.embeddings.LayerNorm.weight":
        return "qformer.layernorm.weight"
    if key == "Qformer.bert.embeddings.LayerNorm.bias":
        return "qformer.layernorm.bias"
    if _IGNORED_QFORMER.match(key):
        return None
    if key.startswith("Qformer.bert.encoder.layer."):
        rest = key[len("Qformer.bert.") :]
        return "qformer." + rest.replace("attention.self.", "attention.attention.")
    raise KeyError(key)


def infer_configs(
    vit: dict[str, torch.Tensor],
    qf: dict[str, torch.Tensor],
    vision_heads: int,
    qformer_heads: int,
    vision_layers: int | None,
) -> tuple[Blip2VisionConfig, Blip2QFormerConfig, int]:
    """Vision and Q-Former configs read off the tensors' shapes (head counts cannot be, so given)."""
    try:
        hidden = vit["cls_token"].shape[-1]
        patch = vit["patch_embed.proj.weight"].shape[-1]
        grid = math.isqrt(vit["pos_embed"].shape[1] - 1)
        blocks = 1 + max(int(m.group(1)) for k in vit if (m := _BLOCK.match(k)))
        v_ffn = vit["blocks.0.mlp.fc1.weight"].shape[0]
        q_hidden = qf["Qformer.bert.embeddings.LayerNorm.weight"].shape[0]
        layer = re.compile(r"^Qformer\.bert\.encoder\.layer\.(\d+)\.")
        q_layers = 1 + max(int(m.group(1)) for k in qf if (m := layer.match(k)))
        cross = sorted({int(m.group(1)) for k in qf if (m := layer.match(k)) and ".crossattention." in k})
        q_ffn = qf["Qformer.bert.encoder.layer.0.intermediate_query.dense.weight"].shape[0]
        enc_width = qf["Qformer.bert.encoder.layer.0.crossattention.self.key.weight"].shape[1]
        n_query = qf["query_tokens"].shape[1]
    except (KeyError, ValueError) as e:
        raise AuditError(
            f"MiniGPT-4 checkpoints lack an expected tensor ({e}): are these the original files?"
        ) from None
    freq = cross[1] - cross[0] if len(cross) > 1 else q_layers
    if cross != list(range(0, q_layers, freq)):
        raise AuditError(f"Q-Former cross-attention in layers {cross}: not every k-th layer from 0")
    depth = vision_layers if vision_layers is not None else EVA_DEPTH
    if depth <= 0:
        raise AuditError(f"--vision-layers {depth}: must be positive")
    if blocks < depth:
        raise AuditError(
            f"the EVA checkpoint has {blocks} blocks; MiniGPT-4 runs {depth} of them "
            "(EVA-CLIP-g has 40, MiniGPT-4 keeps 39): is this eva_vit_g.pth?"
        )
    if enc_width != hidden:
        raise AuditError(
            f"Q-Former cross-attends to width {enc_width}, the EVA checkpoint has width {hidden}"
        )
    vision = Blip2VisionConfig(
        hidden_size=hidden,
        intermediate_size=v_ffn,
        num_hidden_layers=depth,
        num_attention_heads=vision_heads,
        image_size=grid * patch,
        patch_size=patch,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        qkv_bias=True,
    )
    qformer = Blip2QFormerConfig(
        hidden_size=q_hidden,
        num_hidden_layers=q_layers,
        num_attention_heads=qformer_heads,
        intermediate_size=q_ffn,
        cross_attention_frequency=freq,
        encoder_hidden_size=enc_width,
        layer_norm_eps=1e-12,
        hidden_act="gelu",
    )
    return vision, qformer, n_query


def convert_minigpt4(
    vit: Path,
    qformer: Path,
    proj: Path,
    llama: Path,
    out: Path,
    vision_heads: int = 16,
    qformer_heads: int = 12,
    vision_layers: int | None = None,
) -> Path:
    """Map the original MiniGPT-4 files into one transformers-style folder (safetensors + tokenizer).

    Every tensor of the original files is either mapped or known to be unused by MiniGPT-4; anything
    else, and any tensor the model needs that no file holds, is an error naming the first of them.
    Defaults are the release's: EVA ViT-g/14 with 16 heads, run to its 39th of 40 blocks (exactly 39
    are kept; a file with fewer is refused); a BERT-base Q-Former with 12 heads. Buffers and
    non-tensor entries (optimizer, scaler, epoch of a training checkpoint) are ignored.
    """
    from mllm_audit.util.folders import check_new_output
    from mllm_audit.util.numbers import check_counts

    check_counts({"--vision-heads": vision_heads, "--qformer-heads": qformer_heads})
    check_counts({"--vision-layers": vision_layers}, low=0)
    check_new_output(Path(out), "--output")  # before reading gigabytes: nothing the user has is overwritten
    from transformers import AutoTokenizer, BlipImageProcessorPil
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from mllm_audit.models.loading import quiet_transformers

    quiet_transformers()
    sd_vit = read_checkpoint(Path(vit), "EVA ViT (--vit)")
    sd_vit = {k.removeprefix("visual_encoder."): v for k, v in sd_vit.items()}
    sd_q = read_checkpoint(Path(qformer), "Q-Former (--qformer)")
    sd_p = read_checkpoint(Path(proj), "MiniGPT-4 projection (--proj)")
    if not (Path(llama) / "config.json").is_file():
        raise AuditError(f"--llama {llama}: not a Vicuna/Llama HF folder (no config.json)")
    lm = LlamaForCausalLM.from_pretrained(str(llama), dtype="auto", use_safetensors=None)
    tokenizer = AutoTokenizer.from_pretrained(str(llama))
    vision, qcfg, n_query = infer_configs(sd_vit, sd_q, vision_heads, qformer_heads, vision_layers)
    text = lm.config
    if tokenizer.bos_token_id is not None:
        text.bos_token_id = tokenizer.bos_token_id  # else generation stops early
    if tokenizer.eos_token_id is not None:
        text.eos_token_id = tokenizer.eos_token_id
    config = MiniGPT4Config(
        vision_config=vision, qformer_config=qcfg, text_config=text, num_query_tokens=n_query
    )
    config.dtype = lm.dtype

    state: dict[str, torch.Tensor] = {}
    for what, sd, name_of in (
        ("--vit", sd_vit, lambda k: _vit_name(k, vision.num_hidden_layers)),
        # Vision tensors inside the BLIP-2 file override EVA's, as in MiniGPT-4's own load order.
        (
            "--qformer",
            sd_q,
            lambda k: (
                _vit_name(k.removeprefix("visual_encoder."), vision.num_hidden_layers)
                if k.startswith("visual_encoder.")
                else _qformer_name(k)
            ),
        ),
        ("--proj", sd_p, lambda k: k if k in ("llama_proj.weight", "llama_proj.bias") else _raise(k)),
    ):
        for key in sorted(sd):
            try:
                name = name_of(key)
            except KeyError:
                raise AuditError(f"{what} checkpoint: unexpected key {key!r}") from None
            if name is not None:
                state[name] = sd[key]
    _merge_qv_biases(state)
    state.update({f"language_model.{k}": v for k, v in lm.state_dict().items()})

    with torch.device("meta"):
        model = MiniGPT4ForConditionalGeneration(config)
    expected = model.state_dict()
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise AuditError(
            f"MiniGPT-4 conversion: unexpected key {unexpected[0]!r} (layer counts or names differ)"
        )
    missing = sorted(k for k in expected if k not in state and not k.endswith("lm_head.weight"))
    if missing:
        raise AuditError(f"MiniGPT-4 conversion: missing key {missing[0]!r} (no input file holds it)")
    for k, t in state.items():
        if tuple(t.shape) != tuple(expected[k].shape):
            raise AuditError(
                f"MiniGPT-4 conversion: {k} has shape {tuple(t.shape)}, the model wants "
                f"{tuple(expected[k].shape)}"
            )
    model.load_state_dict(state, strict=False, assign=True)
    if "language_model.lm_head.weight" not in state:
        model.language_model.tie_weights()
    _materialize_buffers(model)
    from mllm_audit.models.cards import FAMILY_CARD, read_card, registered_cards, write_folder_card
    from mllm_audit.util.folders import OutputFolder

    folder = OutputFolder(Path(out), "--output", "convert")
    tmp = folder.open()
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        size = vision.image_size
        BlipImageProcessorPil(
            size={"height": size, "width": size}, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD
        ).save_pretrained(tmp)
        # The released model's card (templates, edit modules) travels with the folder, so `--model OUT`
        # prompts exactly as `--model minigpt4` does (models/cards.py resolves a folder's own card first).
        # Edit modules are left to the loader's default for this folder's own layer count.
        released = dataclasses.replace(read_card(registered_cards()[FAMILY_CARD["minigpt4"]]), edit={})
        write_folder_card(released, tmp, f"converted from {Path(vit).name}, {Path(qformer).name}, "
                                         f"{Path(proj).name} and {Path(llama).name}")
        return folder.commit()
    finally:
        if not folder.committed:
            folder.abandon()


def _merge_qv_biases(state: dict[str, torch.Tensor]) -> None:
    """EVA keeps q and v biases apart (k has none); transformers holds them as one qkv bias."""
    for q_key in [k for k in state if k.endswith(".self_attn.q_bias")]:
        v_key = q_key.replace(".q_bias", ".v_bias")
        if v_key in state:
            q, v = state.pop(q_key), state.pop(v_key)
            state[q_key.replace(".q_bias", ".qkv.bias")] = torch.cat([q, torch.zeros_like(q), v])


def _raise(key: str) -> str:
    raise KeyError(key)


def _materialize_buffers(model: nn.Module) -> None:
    """Buffers left on the meta device (not saved; rebuilt at load) get real storage for saving."""
    for mod in model.modules():
        for name, buf in list(mod._buffers.items()):
            if buf is not None and buf.is_meta:
                mod._buffers[name] = torch.zeros(buf.shape, dtype=buf.dtype)
