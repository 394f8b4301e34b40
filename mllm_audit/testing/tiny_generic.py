"""Tiny random image-text-to-text models, one per architecture the generic family claims.

Each builder makes the architecture's own config (tiny widths, no hub), its processor from the stock
processor class with a tiny tokenizer carrying the architecture's special tokens, and the chat template
as published upstream (testing/chat_templates.py names each source), then saves the folder that
`--model <folder>` loads. Every model is fp32, dropout-free and seeded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mllm_audit.testing import chat_templates as templates
from mllm_audit.testing.tiny import tiny_tokenizer

VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def _text(vocab: int, **extra: Any) -> dict[str, Any]:
    """A 2-layer decoder config of width 32 (keys shared by Llama, Qwen2, Gemma, Mistral configs)."""
    return {"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 1024,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1, "tie_word_embeddings": False, **extra}


def _named_tokenizer(specials: list[str], bos: str | None = None, named: dict[str, str] | None = None) -> Any:
    """The tiny BPE tokenizer with `specials` added and named special tokens (`image_token`, `boi_token`...)
    declared the way the checkpoints' tokenizer_config.json declares them (`extra_special_tokens`)."""
    from transformers import PreTrainedTokenizerFast

    base = tiny_tokenizer([]).backend_tokenizer
    if bos is not None:
        base.post_processor = None  # the chat template writes BOS itself
    tok = PreTrainedTokenizerFast(tokenizer_object=base, bos_token=bos or "</s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token="<unk>", extra_special_tokens=dict(named or {}))
    tok.add_tokens([t for t in [*specials, bos, *(named or {}).values()] if t and t not in tok.get_vocab()],
                   special_tokens=True)
    return tok


def _ids(tok: Any, *tokens: str) -> list[int]:
    return [int(tok.convert_tokens_to_ids(t)) for t in tokens]


def qwen2_vl(kind: str = "qwen2_vl") -> tuple[Any, Any]:
    import transformers as T

    from mllm_audit.models.processors import image_only

    tok = tiny_tokenizer(["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                          "<|video_pad|>"])
    image, video, start = _ids(tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>")
    rope = {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0}
    vision = {"depth": 2, "embed_dim": 32, "hidden_size": 32, "num_heads": 4, "patch_size": 8,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3}
    config_cls, model_cls, proc_cls = {
        "qwen2_vl": (T.Qwen2VLConfig, T.Qwen2VLForConditionalGeneration, T.Qwen2VLProcessor),
        "qwen2_5_vl": (T.Qwen2_5_VLConfig, T.Qwen2_5_VLForConditionalGeneration, T.Qwen2_5_VLProcessor),
    }[kind]
    if kind == "qwen2_5_vl":
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "patch_size": 8,
                  "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 32, "window_size": 32,
                  "fullatt_block_indexes": [1]}
    cfg = config_cls(text_config=_text(len(tok), rope_parameters=rope), vision_config=vision,
                     image_token_id=image, video_token_id=video, vision_start_token_id=start)
    ip = T.Qwen2VLImageProcessorPil(patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16,
                                    max_pixels=64 * 64)
    return model_cls(cfg), image_only(proc_cls)(ip, tok, chat_template=templates.QWEN2_VL)


def _llava_processor(tok: Any) -> Any:
    """LLaVA-1.5's processor: CLIP preprocessing at 32 px, 16 patches + CLS per image, its chat template."""
    import transformers as T

    ip = T.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return T.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=8, chat_template=templates.LLAVA,
                            vision_feature_select_strategy="default", num_additional_image_tokens=1)


def llava() -> tuple[Any, Any]:
    import transformers as T

    tok = tiny_tokenizer(["<image>"])
    (image,) = _ids(tok, "<image>")
    cfg = T.LlavaConfig(vision_config=_clip(),
                        text_config={**_text(len(tok)), "model_type": "llama"}, image_token_id=image,
                        vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=16)
    proc = _llava_processor(tok)
    return T.LlavaForConditionalGeneration(cfg), proc


def _clip() -> dict[str, Any]:
    return {**VISION, "image_size": 32, "patch_size": 8, "model_type": "clip_vision_model"}


def _siglip(image_size: int = 32, patch: int = 8) -> dict[str, Any]:
    return {**VISION, "image_size": image_size, "patch_size": patch, "model_type": "siglip_vision_model"}


def llava_next() -> tuple[Any, Any]:
    import transformers as T

    tok = tiny_tokenizer(["<image>"])
    (image,) = _ids(tok, "<image>")
    cfg = T.LlavaNextConfig(vision_config=_clip(),
                            text_config={**_text(len(tok)), "model_type": "llama"}, image_token_id=image,
                            image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]], vision_feature_layer=-2,
                            vision_feature_select_strategy="default", image_seq_length=16)
    ip = T.LlavaNextImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                      image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]])
    proc = T.LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8, chat_template=templates.LLAVA_NEXT,
                                vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return T.LlavaNextForConditionalGeneration(cfg), proc


def llava_onevision() -> tuple[Any, Any]:
    import transformers as T

    from mllm_audit.models.processors import image_only

    tok = tiny_tokenizer(["<|im_start|>", "<|im_end|>", "<image>", "<video>"])
    image, video = _ids(tok, "<image>", "<video>")
    cfg = T.LlavaOnevisionConfig(vision_config=_siglip(), text_config={**_text(len(tok)), "model_type": "qwen2"},
                                 image_token_id=image, video_token_id=video,
                                 image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]], vision_feature_layer=-1,
                                 vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")
    ip = T.LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32},
                                           image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]])
    proc = image_only(T.LlavaOnevisionProcessor)(ip, tok, num_image_tokens=16, vision_feature_select_strategy="full",
                                                 chat_template=templates.LLAVA_ONEVISION)
    return T.LlavaOnevisionForConditionalGeneration(cfg), proc


def gemma3() -> tuple[Any, Any]:
    import transformers as T

    tok = _named_tokenizer(["<start_of_turn>", "<end_of_turn>"], bos="<bos>",
                           named={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                  "image_token": "<image_soft_token>"})
    boi, eoi, image = _ids(tok, "<start_of_image>", "<end_of_image>", "<image_soft_token>")
    cfg = T.Gemma3Config(text_config=_text(len(tok), sliding_window=64, query_pre_attn_scalar=8),
                         vision_config=_siglip(), mm_tokens_per_image=4, boi_token_index=boi, eoi_token_index=eoi,
                         image_token_index=image)
    ip = T.Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
    proc = T.Gemma3Processor(ip, tok, chat_template=templates.GEMMA3, image_seq_length=4)
    return T.Gemma3ForConditionalGeneration(cfg), proc


def paligemma() -> tuple[Any, Any]:
    import transformers as T

    tok = tiny_tokenizer(["<image>"])
    tok.add_tokens(["<bos>"], special_tokens=True)
    tok.bos_token = "<bos>"
    (image,) = _ids(tok, "<image>")
    cfg = T.PaliGemmaConfig(vision_config={**_siglip(), "projection_dim": 32},
                            text_config={**_text(len(tok)), "model_type": "gemma"}, image_token_index=image,
                            projection_dim=32, hidden_size=32)
    ip = T.SiglipImageProcessorPil(size={"height": 32, "width": 32})
    ip.image_seq_length = 16
    proc = T.PaliGemmaProcessor(ip, tok)  # PaliGemma ships no chat template: the processor builds the prompt
    return T.PaliGemmaForConditionalGeneration(cfg), proc


def _idefics3_layout(kind: str, start: str, template: str) -> tuple[Any, Any]:
    """Idefics3's layout (image splits into row/column tiles plus a global image) with `kind`'s classes:
    "Idefics3" or "SmolVLM" (whose processor is built without its video part, which needs torchvision)."""
    import transformers as T

    from mllm_audit.models.processors import image_only

    specials = [start, "<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]
    specials += [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tok = tiny_tokenizer(specials)
    (image,) = _ids(tok, "<image>")
    vision = {**VISION, "image_size": 32, "patch_size": 8}
    cfg = getattr(T, f"{kind}Config")(vision_config=vision, text_config={**_text(len(tok)), "model_type": "llama"},
                                      image_token_id=image, scale_factor=2)
    ip = getattr(T, f"{kind}ImageProcessorPil")(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    proc_cls = getattr(T, f"{kind}Processor")
    proc_cls = image_only(proc_cls) if kind == "SmolVLM" else proc_cls
    proc = proc_cls(ip, tok, image_seq_len=4, chat_template=template)
    return getattr(T, f"{kind}ForConditionalGeneration")(cfg), proc


def idefics3() -> tuple[Any, Any]:
    return _idefics3_layout("Idefics3", "<|begin_of_text|>", templates.IDEFICS3)


def smolvlm() -> tuple[Any, Any]:
    return _idefics3_layout("SmolVLM", "<|im_start|>", templates.SMOLVLM)


def mllama() -> tuple[Any, Any]:
    import transformers as T

    tok = tiny_tokenizer(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                          "<|image|>"])
    tok.bos_token = "<|begin_of_text|>"
    (image,) = _ids(tok, "<|image|>")
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_global_layers": 1,
              "attention_heads": 4, "image_size": 32, "patch_size": 8, "max_num_tiles": 2,
              "intermediate_layers_indices": [0], "vision_output_dim": 64, "supported_aspect_ratios": [[1, 1], [1, 2],
                                                                                                      [2, 1]]}
    text = {**_text(len(tok) + 8), "cross_attention_layers": [1], "rope_parameters": {"rope_type": "default",
                                                                                      "rope_theta": 10000.0}}
    cfg = T.MllamaConfig(vision_config=vision, text_config=text, image_token_index=image)
    ip = T.MllamaImageProcessorPil(size={"height": 32, "width": 32}, max_image_tiles=2)
    proc = T.MllamaProcessor(ip, tok, chat_template=templates.MLLAMA)
    model = T.MllamaForConditionalGeneration(cfg)
    with torch.no_grad():  # cross-attention gates start at 0 (images would change nothing): open them
        for name, param in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                param.fill_(1.0)
    return model, proc


def internvl() -> tuple[Any, Any]:
    import transformers as T

    from mllm_audit.models.processors import image_only

    tok = _named_tokenizer(["<|im_start|>", "<|im_end|>"],
                           named={"start_image_token": "<img>", "end_image_token": "</img>",
                                  "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    (image,) = _ids(tok, "<IMG_CONTEXT>")
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": [32, 32], "patch_size": [8, 8]}
    cfg = T.InternVLConfig(vision_config=vision, text_config={**_text(len(tok)), "model_type": "qwen2"},
                           image_token_id=image, downsample_ratio=0.5)
    ip = T.GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=False)
    proc = image_only(T.InternVLProcessor)(ip, tok, image_seq_length=4, chat_template=templates.INTERNVL)
    return T.InternVLForConditionalGeneration(cfg), proc


def qwen3_vl() -> tuple[Any, Any]:
    import transformers as T

    from mllm_audit.models.processors import image_only

    tok = tiny_tokenizer(["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                          "<|video_pad|>"])
    image, video, start, end = _ids(tok, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    rope = {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0, "mrope_interleaved": True}
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4, "patch_size": 8,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 32, "num_position_embeddings": 16,
              "deepstack_visual_indexes": [0]}
    cfg = T.Qwen3VLConfig(text_config=_text(len(tok), rope_parameters=rope), vision_config=vision,
                          image_token_id=image, video_token_id=video, vision_start_token_id=start,
                          vision_end_token_id=end)
    ip = T.Qwen2VLImageProcessorPil(patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16,
                                    max_pixels=64 * 64)
    proc = image_only(T.Qwen3VLProcessor)(ip, tok, chat_template=templates.QWEN3_VL)
    return T.Qwen3VLForConditionalGeneration(cfg), proc


def vipllava() -> tuple[Any, Any]:
    import transformers as T

    tok = tiny_tokenizer(["<image>"])
    (image,) = _ids(tok, "<image>")
    cfg = T.VipLlavaConfig(vision_config=_clip(),
                           text_config={**_text(len(tok)), "model_type": "llama"}, image_token_id=image,
                           vision_feature_layers=[-2, -1], image_seq_length=16)
    proc = _llava_processor(tok)
    return T.VipLlavaForConditionalGeneration(cfg), proc


def idefics2() -> tuple[Any, Any]:
    import transformers as T

    tok = tiny_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>"])
    (image,) = _ids(tok, "<image>")
    perceiver = {"hidden_act": "silu", "resampler_n_latents": 4, "resampler_depth": 1, "resampler_n_heads": 2,
                 "resampler_head_dim": 8, "num_key_value_heads": 1}
    cfg = T.Idefics2Config(vision_config={**VISION, "image_size": 32, "patch_size": 8},
                           text_config={**_text(len(tok)), "model_type": "mistral"}, perceiver_config=perceiver,
                           image_token_id=image)
    ip = T.Idefics2ImageProcessorPil(size={"shortest_edge": 32, "longest_edge": 32}, do_image_splitting=False)
    proc = T.Idefics2Processor(ip, tok, image_seq_len=4, chat_template=templates.IDEFICS2)
    return T.Idefics2ForConditionalGeneration(cfg), proc


BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "llava": llava,
    "qwen2_vl": qwen2_vl,
    "qwen2_5_vl": lambda: qwen2_vl("qwen2_5_vl"),
    "llava_next": llava_next,
    "llava_onevision": llava_onevision,
    "gemma3": gemma3,
    "paligemma": paligemma,
    "idefics3": idefics3,
    "mllama": mllama,
    "internvl": internvl,
    "qwen3_vl": qwen3_vl,
    "vipllava": vipllava,
    "idefics2": idefics2,
    "smolvlm": smolvlm,
}


def save_tiny_generic(arch: str, out: Path, seed: int = 0) -> Path:
    """Build the tiny `arch` model (seeded) and its processor, and save them as a model folder."""
    torch.manual_seed(seed)
    model, processor = BUILDERS[arch]()
    model.eval()
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
