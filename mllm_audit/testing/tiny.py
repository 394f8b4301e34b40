# Over 350 lines: every tiny-model builder in one place (BLIP-2, CLIP, Janus, Emu3, LLaVA, InstructBLIP).
"""Tiny models built from configs: the stand-ins for real weights on machines with no model hub.

Tests, benchmarks and the toy world build a model here, `save_pretrained` it to a folder, and load
it back through exactly the path a real model takes (`--model <folder>`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

DEFAULT_CORPUS = (
    "Question: Is this person a doctor or a nurse? Answer: doctor nurse pilot flight attendant",
    "a photo of a person in a kitchen office clinic garage classroom with a laptop",
    "What colour is the background? red green blue yellow How many objects are there? one two three",
    "The capital of France is Paris. Water boils at one hundred degrees. cat dog tree",
)


def build_tokenizer(corpus: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 400) -> Any:
    """A byte-level BPE tokenizer trained in-process, wrapped as PreTrainedTokenizerFast.

    Like OPT's, it prepends BOS (`</s>`) when special tokens are added.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    bos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def blip2_config(
    vocab_size: int,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    qformer_hidden: int = 32,
    qformer_layers: int = 2,
    text_hidden: int = 64,
    text_layers: int = 2,
    text_ffn: int = 128,
    heads: int = 4,
    num_query_tokens: int = 4,
    image_token_id: int | None = None,
) -> Any:
    """A Blip2Config with an OPT text model, small enough for CPU tests."""
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

    vision = Blip2VisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 4,
        num_hidden_layers=vision_layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        initializer_range=0.02,
    )
    qformer = Blip2QFormerConfig(
        hidden_size=qformer_hidden,
        num_hidden_layers=qformer_layers,
        num_attention_heads=heads,
        intermediate_size=qformer_hidden * 4,
        encoder_hidden_size=vision_hidden,
        vocab_size=vocab_size,
        max_position_embeddings=64,
    )
    text = OPTConfig(
        vocab_size=vocab_size,
        hidden_size=text_hidden,
        num_hidden_layers=text_layers,
        ffn_dim=text_ffn,
        num_attention_heads=heads,
        max_position_embeddings=256,
        word_embed_proj_dim=text_hidden,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        dropout=0.0,
        attention_dropout=0.0,
    )
    return Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=num_query_tokens,
        image_token_id=image_token_id if image_token_id is not None else vocab_size - 1,
    )


def save_tiny_blip2(out_dir: Path, seed: int = 0, tokenizer: Any = None, **config_kwargs: Any) -> Path:
    """Build a random tiny BLIP-2 (+ tokenizer and processor) and save it as a model folder."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessorPil

    tok = tokenizer if tokenizer is not None else build_tokenizer()
    tok.add_tokens(["<image>"], special_tokens=True)
    tok.image_token = "<image>"
    image_token_id = tok.convert_tokens_to_ids("<image>")
    vocab = len(tok)
    cfg = blip2_config(vocab_size=vocab, image_token_id=image_token_id, **config_kwargs)
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(cfg)
    with torch.no_grad():
        model.query_tokens.normal_(0.0, 0.02)
    size = cfg.vision_config.image_size
    improc = BlipImageProcessorPil(size={"height": size, "width": size})
    processor = Blip2Processor(image_processor=improc, tokenizer=tok, num_query_tokens=cfg.num_query_tokens)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


# ---- tiny CLIP (the toy classifier's backbone) -------------------------------------------------------------

def save_tiny_clip(out: Path, seed: int = 0, image_size: int = 32, width: int = 32) -> Path:
    """A random tiny CLIPModel with a tokenizer and image processor, saved as a model folder.

    `width` is the embedding size: a least-squares head reads up to about `width` images exactly.
    """
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    tok = build_tokenizer(
        ["a photo of a man woman person White Black Indian Asian Middle Eastern Latino Hispanic face people"]
    )
    text = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, pad_token_id=0, bos_token_id=1,
                          eos_token_id=2)
    vision = CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                              num_attention_heads=4, image_size=image_size, patch_size=8)
    cfg = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=width)
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    improc = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    out = Path(out)
    model.save_pretrained(out)
    improc.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ---- tiny and toy Janus ---------------------------------------------------------------------------

# One user turn, then the assistant cue: the shape of deepseek-community Janus' template, written here.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|User|>: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image_placeholder>\n{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "\n\n{% endfor %}{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)
SPECIALS = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}


def janus_tokenizer(corpus: list[str] | None = None) -> Any:
    """The tiny BPE tokenizer with Janus' three image specials (and the chat roles) as special tokens."""
    from transformers import PreTrainedTokenizerFast

    base = build_tokenizer(list(DEFAULT_CORPUS) + list(corpus or []), vocab_size=500 if corpus else 400)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=SPECIALS,
    )
    tok.add_tokens(["<|User|>", "<|Assistant|>"], special_tokens=True)
    return tok


@dataclass
class TinyJanusSpec:
    """Sizes of a tiny Janus; `image_size == patch_size` gives one image token per image."""

    hidden: int = 32
    layers: int = 2
    image_size: int = 32
    patch_size: int = 8
    codebook: int = 16
    vq_levels: int = 4  # channel_multiplier length: the decoder upsamples 2^(levels-1) times
    vq_latent: int = 32  # VQ encoder output channels (multiple of 32); wide enough to read codes back linearly
    corpus: list[str] = field(default_factory=list)


def save_tiny_janus(out: Path, seed: int = 0, spec: TinyJanusSpec | None = None) -> Path:
    """A random tiny Janus (+ processor and generation config) saved as a model folder."""
    from transformers import (
        GenerationConfig,
        JanusConfig,
        JanusForConditionalGeneration,
        JanusImageProcessorPil,
        JanusProcessor,
        JanusVisionConfig,
        JanusVQVAEConfig,
        LlamaConfig,
    )

    spec = spec or TinyJanusSpec()
    tok = janus_tokenizer(spec.corpus)
    image_id, boi = tok.convert_tokens_to_ids([SPECIALS["image_token"], SPECIALS["boi_token"]])
    n_tokens = (spec.image_size // spec.patch_size) ** 2
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=spec.hidden,
        intermediate_size=spec.hidden * 2,
        num_hidden_layers=spec.layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    vision = JanusVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.hidden,
        mlp_ratio=2.0,
        num_image_tokens=n_tokens,
    )
    # GroupNorm takes 32 groups: channels must be multiples of 32. projection_dim = text hidden.
    vq = JanusVQVAEConfig(
        embed_dim=8,
        num_embeddings=spec.codebook,
        latent_channels=spec.vq_latent,
        base_channels=32,
        channel_multiplier=[1] * spec.vq_levels,
        num_res_blocks=1,
        projection_dim=spec.hidden,
        image_token_embed_dim=spec.hidden,
        num_hidden_layers=2,
    )
    cfg = JanusConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        vq_config=vq.to_dict(),
        image_token_id=image_id,
        tie_word_embeddings=False,
    )

    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        generation_kwargs={"boi_token_id": boi},
        guidance_scale=5.0,
        do_sample=True,
    )
    size = spec.image_size
    improc = JanusImageProcessorPil(size={"height": size, "width": size})
    proc = JanusProcessor(image_processor=improc, tokenizer=tok, chat_template=CHAT_TEMPLATE, num_image_tokens=n_tokens)
    out = Path(out)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def save_tiny_emu3(out: Path, seed: int = 0, codebook: int = 16, image_size: int = 32) -> Path:
    """A random tiny Emu3 (+ processor) saved as a model folder, built the way the -hf checkpoints are:
    a BPE tokenizer whose vocabulary holds `<|visual token N|>` for every code, and the config's
    `vocabulary_map` read from it. The tokenizer adds no BOS itself (the processor prepends it)."""
    from transformers import (
        Emu3Config,
        Emu3ForConditionalGeneration,
        Emu3ImageProcessor,
        Emu3Processor,
        Emu3TextConfig,
        Emu3VQVAEConfig,
        GenerationConfig,
        PreTrainedTokenizerFast,
    )

    from mllm_audit.models.families.emu3 import CHAT_TEMPLATE as EMU3_CHAT_TEMPLATE
    from mllm_audit.models.families.emu3 import EOL
    from mllm_audit.models.families.emu3 import SPECIALS as EMU3_SPECIALS

    base = build_tokenizer().backend_tokenizer
    base.post_processor = None  # Emu3's tokenizer adds no BOS; the processor writes it
    tok = PreTrainedTokenizerFast(tokenizer_object=base, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", extra_special_tokens=EMU3_SPECIALS)
    tok.add_tokens([EOL] + [f"<|visual token {i:06d}|>" for i in range(codebook)], special_tokens=True)
    text = Emu3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                          pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, attention_dropout=0.0)
    # GroupNorm takes 32 groups: channels multiples of 32; four levels = the processor's downsampling of 8.
    vq = Emu3VQVAEConfig(codebook_size=codebook, embed_dim=4, latent_channels=4, base_channels=32,
                         channel_multiplier=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[], hidden_size=32,
                         num_attention_heads=1)
    cfg = Emu3Config(vq_config=vq.to_dict(), text_config=text.to_dict(), vocabulary_map=dict(tok.get_vocab()))
    torch.manual_seed(seed)
    model = Emu3ForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
                                               eos_token_id=tok.eos_token_id, do_sample=True, guidance_scale=3.0)
    improc = Emu3ImageProcessor(min_pixels=image_size * image_size, max_pixels=image_size * image_size,
                                spatial_factor=8)
    proc = Emu3Processor(image_processor=improc, tokenizer=tok, chat_template=EMU3_CHAT_TEMPLATE)
    out = Path(out)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


# ---- tiny LLaVA and InstructBLIP (the conformance tests' families) ----------------------------

# The vision tower both share: 32x32 images, 8x8 patches (16 patches), 2 layers of width 32.
TINY_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "image_size": 32, "patch_size": 8}

# One user turn, then the assistant cue: the shape of llava-1.5-hf's template, written for the tests.
LLAVA_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | upper }}: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }} {% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def tiny_tokenizer(extra_specials: list[str]) -> Any:

    tok = build_tokenizer()
    tok.add_tokens(extra_specials, special_tokens=True)
    return tok


def llama_config(vocab: int, hidden: int = 64, layers: int = 2, heads: int = 4) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        tie_word_embeddings=False,
    )


def save_tiny_llava(out: Path, seed: int = 0) -> Path:
    """A random tiny LLaVA-1.5 (CLIP vision, Llama text) with its processor and chat template."""
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = tiny_tokenizer(["<image>"])
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(**TINY_VISION, projection_dim=32)
    cfg = LlavaConfig(
        vision_config=vision.to_dict() | {"model_type": "clip_vision_model"},
        text_config=llama_config(len(tok)).to_dict(),
        image_token_id=image_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=16,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval()
    improc = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc = LlavaProcessor(
        image_processor=improc,
        tokenizer=tok,
        patch_size=8,
        chat_template=LLAVA_CHAT_TEMPLATE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def save_tiny_instructblip(out: Path, seed: int = 0) -> Path:
    """A random tiny InstructBLIP (Llama text) with its two tokenizers and processor."""
    from transformers import (
        BlipImageProcessorPil,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
        InstructBlipQFormerConfig,
        InstructBlipVisionConfig,
    )


    tok = tiny_tokenizer(["<image>"])
    tok.image_token = "<image>"
    qtok = build_tokenizer(vocab_size=300)
    vision = InstructBlipVisionConfig(**TINY_VISION, initializer_range=0.02)
    qformer = InstructBlipQFormerConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        encoder_hidden_size=32,
        vocab_size=len(qtok),
        max_position_embeddings=64,
        pad_token_id=0,
    )
    cfg = InstructBlipConfig(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=llama_config(len(tok)).to_dict(),
        num_query_tokens=4,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = InstructBlipForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        model.query_tokens.normal_(0.0, 0.02)
    improc = BlipImageProcessorPil(size={"height": 32, "width": 32})
    proc = InstructBlipProcessor(
        image_processor=improc, tokenizer=tok, qformer_tokenizer=qtok, num_query_tokens=4
    )
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out
