"""Tiny models built from configs: the stand-ins for real weights on machines with no model hub.

Tests, benchmarks and the toy world build a model here, `save_pretrained` it to a folder, and load
it back through exactly the path a real model takes (`--model <folder>`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
    import torch
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
