"""GPU figures at real model sizes with random weights: load time, memory, scan throughput, precision drift.

A model of the named shape is built from a config (random weights, the shipped tiny BPE tokenizer with
the real vocabulary size in the config), saved to a folder and loaded back through the project's own
path (`load_model` on a card YAML that is the registered card with `weights` pointed at that folder),
once per precision. Per precision: load time (warm page cache), GPU memory after load and peak during
the scan, candidates/s through `scoring.score` vs a naive loop (one stock forward per candidate, image
re-processed and re-encoded each time, as EasyEdit evaluates), and the drift of every score vs fp32
on the same weights (max |delta logp|, and how many answer pairs change their preferred answer).
Optionally FT-L seconds per edit (`run_fix`) and Janus image generation (images/s at 384 px).

Random weights give flat next-token distributions, so the drift figures bound arithmetic error on
this shape; trained models (sharper logits, outlier features) drift more under 8/4-bit.

Usage (one model per process, so each starts with an empty GPU):
    python benchmarks/gpu_bench.py blip2-opt-2.7b --precisions fp32,bf16,fp16,8bit:fp16,4bit:bf16 --ftl
    python benchmarks/gpu_bench.py janus-pro-1b --gen
    python benchmarks/gpu_bench.py blip2-opt-2.7b --tiny --device cpu     # CPU dry run, small configs
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from mllm_audit.models import load_model
from mllm_audit.models.base import LoadOptions
from mllm_audit.scoring.contract import Request, score, tokenize
from mllm_audit.util.resources import adapters_dir

PROMPTS = ["Is this person a doctor or a nurse?", "What is this person's job?", "Is this person rich or poor?"]
ANSWERS = [("doctor", "nurse"), ("pilot", "flight attendant"), ("rich", "poor")]
CORPUS = PROMPTS + [" ".join(a) for a in ANSWERS] + ["###Human: <Img><ImageHere></Img> ###Assistant:"]
GEN_PROMPTS = ["A photo of the face of a doctor, a person", "A photo of the face of a nurse, a person"]

# name -> (family, registered card, real sizes, tiny sizes for the CPU dry run)
SHAPES: dict[str, dict[str, Any]] = {
    "blip2-opt-2.7b": {
        "family": "blip2", "card": "blip2-opt",
        # EVA ViT-g (39 layers, width 1408, 224 px / 14 px), BERT-base Q-Former, 32 queries, OPT-2.7B.
        "real": dict(v_hidden=1408, v_ffn=6144, v_layers=39, v_heads=16, image=224, patch=14,
                     q_hidden=768, q_layers=12, q_heads=12, n_query=32,
                     t_hidden=2560, t_ffn=10240, t_layers=32, t_heads=32, vocab=50272),
        "tiny": dict(v_hidden=64, v_ffn=128, v_layers=2, v_heads=4, image=56, patch=14,
                     q_hidden=64, q_layers=2, q_heads=4, n_query=8,
                     t_hidden=64, t_ffn=128, t_layers=2, t_heads=4, vocab=1000),
    },
    "minigpt4-7b": {
        "family": "minigpt4", "card": "minigpt4",
        # EVA ViT-g (39 of 40 blocks), Q-Former, 32 queries, llama_proj, Vicuna-7B (Llama-7B shape).
        "real": dict(v_hidden=1408, v_ffn=6144, v_layers=39, v_heads=16, image=224, patch=14,
                     q_hidden=768, q_layers=12, q_heads=12, n_query=32,
                     t_hidden=4096, t_ffn=11008, t_layers=32, t_heads=32, vocab=32000),
        "tiny": dict(v_hidden=64, v_ffn=128, v_layers=2, v_heads=4, image=56, patch=14,
                     q_hidden=64, q_layers=2, q_heads=4, n_query=8,
                     t_hidden=64, t_ffn=128, t_layers=2, t_heads=4, vocab=1000),
    },
    "janus-pro-1b": {
        "family": "janus", "card": "janus-pro-1b",
        # SigLIP-L 384 px / 16 px (576 image tokens), Llama 2048 x 24, vocab 102400, VQ 16384 codes.
        "real": dict(v_hidden=1024, v_layers=24, v_heads=16, image=384, patch=16,
                     t_hidden=2048, t_ffn=5632, t_layers=24, t_heads=16, vocab=102400,
                     vq_base=128, vq_mult=[1, 1, 2, 2, 4], codebook=16384),
        "tiny": dict(v_hidden=32, v_layers=2, v_heads=4, image=64, patch=16,
                     t_hidden=64, t_ffn=128, t_layers=2, t_heads=4, vocab=1000,
                     vq_base=32, vq_mult=[1, 1, 1, 1, 1], codebook=64),
    },
    "janus-pro-7b": {
        "family": "janus", "card": "janus-pro-7b",
        "real": dict(v_hidden=1024, v_layers=24, v_heads=16, image=384, patch=16,
                     t_hidden=4096, t_ffn=11008, t_layers=30, t_heads=32, vocab=102400,
                     vq_base=128, vq_mult=[1, 1, 2, 2, 4], codebook=16384),
        "tiny": dict(v_hidden=32, v_layers=2, v_heads=4, image=64, patch=16,
                     t_hidden=64, t_ffn=128, t_layers=2, t_heads=4, vocab=1000,
                     vq_base=32, vq_mult=[1, 1, 1, 1, 1], codebook=64),
    },
}


# ---- building random models at a shape -------------------------------------------------------------


def _opt_config(s: dict[str, Any], pad: int, bos: int) -> Any:
    from transformers import OPTConfig

    return OPTConfig(vocab_size=s["vocab"], hidden_size=s["t_hidden"], num_hidden_layers=s["t_layers"],
                     ffn_dim=s["t_ffn"], num_attention_heads=s["t_heads"], max_position_embeddings=2048,
                     word_embed_proj_dim=s["t_hidden"], pad_token_id=pad, bos_token_id=bos, eos_token_id=bos,
                     dropout=0.0, attention_dropout=0.0)


def _vision_qformer(s: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import Blip2QFormerConfig, Blip2VisionConfig

    vision = Blip2VisionConfig(hidden_size=s["v_hidden"], intermediate_size=s["v_ffn"],
                               num_hidden_layers=s["v_layers"], num_attention_heads=s["v_heads"],
                               image_size=s["image"], patch_size=s["patch"], layer_norm_eps=1e-6, qkv_bias=True)
    qformer = Blip2QFormerConfig(hidden_size=s["q_hidden"], num_hidden_layers=s["q_layers"],
                                 num_attention_heads=s["q_heads"], intermediate_size=4 * s["q_hidden"],
                                 encoder_hidden_size=s["v_hidden"], cross_attention_frequency=2)
    return vision, qformer


def _finish(model: torch.nn.Module, folder: Path, save_dtype: torch.dtype) -> None:
    """Queries get small random values (not zeros), then the weights go to disk in `save_dtype`."""
    with torch.no_grad():
        if hasattr(model, "query_tokens"):
            model.query_tokens.normal_(0.0, 0.02)
    model.to("cpu", save_dtype).save_pretrained(folder)


def build_blip2(s: dict[str, Any], folder: Path, device: str, save_dtype: torch.dtype) -> None:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessorPil

    from mllm_audit.testing.tiny import build_tokenizer

    tok = build_tokenizer(CORPUS)
    tok.add_tokens(["<image>"], special_tokens=True)
    tok.image_token = "<image>"
    vision, qformer = _vision_qformer(s)
    text = _opt_config(s, tok.pad_token_id, tok.bos_token_id)
    cfg = Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                      num_query_tokens=s["n_query"], image_token_id=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    with torch.device(device):
        model = Blip2ForConditionalGeneration(cfg)
    _finish(model, folder, save_dtype)
    improc = BlipImageProcessorPil(size={"height": s["image"], "width": s["image"]})
    Blip2Processor(image_processor=improc, tokenizer=tok, num_query_tokens=s["n_query"]).save_pretrained(folder)


def build_minigpt4(s: dict[str, Any], folder: Path, device: str, save_dtype: torch.dtype) -> None:
    from transformers import BlipImageProcessorPil, LlamaConfig
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from mllm_audit.models.families.minigpt4 import MiniGPT4Config, MiniGPT4ForConditionalGeneration
    from mllm_audit.testing.tiny import build_tokenizer

    tok = build_tokenizer(CORPUS)
    vision, qformer = _vision_qformer(s)
    text = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["t_hidden"], intermediate_size=s["t_ffn"],
                       num_hidden_layers=s["t_layers"], num_attention_heads=s["t_heads"],
                       num_key_value_heads=s["t_heads"], max_position_embeddings=2048, rms_norm_eps=1e-6,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    cfg = MiniGPT4Config(vision_config=vision, qformer_config=qformer, text_config=text,
                         num_query_tokens=s["n_query"])
    torch.manual_seed(0)
    with torch.device(device):
        model = MiniGPT4ForConditionalGeneration(cfg)
    _finish(model, folder, save_dtype)
    tok.save_pretrained(folder)
    BlipImageProcessorPil(size={"height": s["image"], "width": s["image"]}, image_mean=OPENAI_CLIP_MEAN,
                          image_std=OPENAI_CLIP_STD).save_pretrained(folder)


def build_janus(s: dict[str, Any], folder: Path, device: str, save_dtype: torch.dtype) -> None:
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

    from mllm_audit.testing.tiny import CHAT_TEMPLATE, SPECIALS, janus_tokenizer

    tok = janus_tokenizer(CORPUS + GEN_PROMPTS)
    image_id, boi = tok.convert_tokens_to_ids([SPECIALS["image_token"], SPECIALS["boi_token"]])
    n_tokens = (s["image"] // s["patch"]) ** 2
    text = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["t_hidden"], intermediate_size=s["t_ffn"],
                       num_hidden_layers=s["t_layers"], num_attention_heads=s["t_heads"],
                       num_key_value_heads=s["t_heads"], max_position_embeddings=16384, rms_norm_eps=1e-6,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       tie_word_embeddings=False)
    vision = JanusVisionConfig(hidden_size=s["v_hidden"], num_hidden_layers=s["v_layers"],
                               num_attention_heads=s["v_heads"], image_size=s["image"], patch_size=s["patch"],
                               projection_dim=s["t_hidden"], num_image_tokens=n_tokens)
    vq = JanusVQVAEConfig(num_embeddings=s["codebook"], base_channels=s["vq_base"], channel_multiplier=s["vq_mult"],
                          projection_dim=s["t_hidden"], image_token_embed_dim=s["t_hidden"])
    cfg = JanusConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), vq_config=vq.to_dict(),
                      image_token_id=image_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = JanusForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
                                               eos_token_id=tok.eos_token_id, generation_kwargs={"boi_token_id": boi},
                                               guidance_scale=5.0, do_sample=True)
    _finish(model, folder, save_dtype)
    improc = JanusImageProcessorPil(size={"height": s["image"], "width": s["image"]})
    JanusProcessor(image_processor=improc, tokenizer=tok, chat_template=CHAT_TEMPLATE,
                   num_image_tokens=n_tokens).save_pretrained(folder)


BUILDERS = {"blip2": build_blip2, "minigpt4": build_minigpt4, "janus": build_janus}


def write_card(name: str, folder: Path, tiny: bool) -> Path:
    """The registered card with `weights` pointed at the built folder (tiny: default edit modules)."""
    data = yaml.safe_load((adapters_dir() / f"{SHAPES[name]['card']}.yaml").read_text())
    data["weights"] = str(folder.resolve())
    data["name"] = f"{data['name']}-random"
    if tiny:
        data.pop("edit", None)
    path = folder.parent / f"{folder.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---- measuring ---------------------------------------------------------------------------------


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def mem_gib(kind: str) -> float | None:
    if not torch.cuda.is_available():
        return None
    n = torch.cuda.max_memory_allocated() if kind == "peak" else torch.cuda.memory_allocated()
    return round(n / 2**30, 2)


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def naive_logp(adapter: Any, family: str, req: Request, image: Image.Image) -> float:
    """One full forward for one candidate, the image re-processed and re-encoded (as EasyEdit evaluates)."""
    prefix, cont = tokenize(adapter, req)
    dev = adapter.device
    ids = torch.tensor([prefix + cont], device=dev)
    labels = ids.clone()
    labels[:, : len(prefix)] = -100
    if family == "blip2":  # Blip2ForConditionalGeneration's own forward with labels
        pv = adapter.processor.image_processor(image, return_tensors="pt")["pixel_values"].to(dev, adapter.dtype)
        out = adapter.model(pixel_values=pv, input_ids=ids, labels=labels)
    elif family == "janus":  # JanusForConditionalGeneration's own forward with labels
        pv = adapter.processor.image_processor(image, return_tensors="pt")["pixel_values"].to(dev, adapter.dtype)
        out = adapter.model(input_ids=ids, pixel_values=pv, labels=labels)
    else:  # MiniGPT-4 has no stock multimodal forward: encode, splice, Llama forward with labels
        feats = adapter.encode_images([image])
        emb = adapter.embed(ids, [feats[0]])
        out = adapter.model.language_model(inputs_embeds=emb, labels=labels)
    return -float(out.loss) * len(cont)


def parse_precision(p: str) -> tuple[str, str | None]:
    """'bf16' -> (bf16, None); '8bit:fp16' -> (fp16, 8bit): quantized linears, the rest in fp16."""
    if ":" in p:
        q, d = p.split(":", 1)
        return d, q
    if p in ("8bit", "4bit"):
        return "fp32", p
    return p, None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(SHAPES))
    ap.add_argument("--tiny", action="store_true", help="small configs (CPU dry run)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precisions", default="fp32,bf16,fp16,8bit:fp16,4bit:bf16")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--naive", type=int, default=24, help="candidates run through the naive loop")
    ap.add_argument("--batch-sizes", default="16")
    ap.add_argument("--ftl", default="", help="precisions at which to time FT-L (run_fix), e.g. fp32,bf16")
    ap.add_argument("--edits", type=int, default=8)
    ap.add_argument("--gen", default="", help="precisions at which to time Janus image generation")
    ap.add_argument("--gen-batch", type=int, default=16)
    ap.add_argument("--budget-s", type=float, default=1e9, help="skip remaining precisions after this")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t_start = time.perf_counter()
    shape = SHAPES[args.model]
    family = shape["family"]
    sizes = shape["tiny" if args.tiny else "real"]
    out_path = args.out or Path(os.environ.get("OUT", ".")) / f"gpu_{args.model}{'_tiny' if args.tiny else ''}.json"
    res: dict[str, Any] = {"model": args.model, "tiny": args.tiny, "device": args.device, "sizes": sizes,
                           "torch": torch.__version__, "argv": sys.argv[1:], "runs": {}, "errors": []}
    if args.device.startswith("cuda"):
        res["card"] = torch.cuda.get_device_name()
    import transformers

    res["transformers"] = transformers.__version__

    def dump() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(res, indent=1))

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {args.model}: {msg}", flush=True)

    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    folder = work / args.model
    if folder.exists():
        shutil.rmtree(folder)
    t = time.perf_counter()
    save_dtype = torch.float32 if args.tiny else torch.bfloat16
    BUILDERS[family](sizes, folder, args.device, save_dtype)
    free()
    res["build_s"] = round(time.perf_counter() - t, 1)
    res["saved_gib"] = round(sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**30, 2)
    card = write_card(args.model, folder, args.tiny)
    log(f"built and saved ({res['saved_gib']} GiB, {save_dtype}) in {res['build_s']} s")
    dump()

    rng = np.random.default_rng(0)
    images = {f"img{k}": Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
              for k in range(args.images + 2)}
    warm_keys = [f"img{args.images}", f"img{args.images + 1}"]
    reqs = [Request(prompt=PROMPTS[p], continuation=a, image=f"img{k}", task="vqa")
            for k in range(args.images) for p in range(len(PROMPTS)) for a in ANSWERS[p]]
    warm = [Request(PROMPTS[0], ANSWERS[0][0], k, "vqa") for k in warm_keys]
    ref: np.ndarray | None = None
    for prec in [p for p in args.precisions.split(",") if p]:
        if time.perf_counter() - t_start > args.budget_s:
            res["errors"].append(f"{prec}: skipped, budget {args.budget_s} s spent")
            continue
        dtype, quant = parse_precision(prec)
        run: dict[str, Any] = {"dtype": dtype, "quantize": quant}
        res["runs"][prec] = run
        adapter = None
        try:
            free()
            reset_peak()
            t = time.perf_counter()
            adapter = load_model(str(card), LoadOptions(dtype=dtype, device=args.device, quantize=quant))
            sync(args.device)
            run["load_s"] = round(time.perf_counter() - t, 2)
            run["mem_after_load_gib"] = mem_gib("now")
            run["params_b"] = round(sum(p.numel() for p in adapter.model.parameters()) / 1e9, 3)
            prefix, _ = tokenize(adapter, reqs[0])
            run["prefix_tokens"] = len(prefix)
            log(f"{prec}: loaded in {run['load_s']} s, {run['mem_after_load_gib']} GiB")
            score(adapter, warm, images.__getitem__, batch_size=2)  # cuBLAS handles, allocator warm-up
            for bs in [int(b) for b in args.batch_sizes.split(",")]:
                reset_peak()
                sync(args.device)
                t = time.perf_counter()
                got = score(adapter, reqs, images.__getitem__, batch_size=bs)
                sync(args.device)
                dt = time.perf_counter() - t
                key = f"scan_bs{bs}" + (f"_{sum(k.startswith(f'scan_bs{bs}') for k in run) + 1}"
                                         if f"scan_bs{bs}" in run else "")
                run[key] = {"cand_per_s": round(len(reqs) / dt, 2), "s": round(dt, 3),
                                       "peak_gib": mem_gib("peak")}
                scores = np.array([s.logp for s in got], dtype=np.float64)
                log(f"{prec}: scan bs {bs}: {len(reqs) / dt:.1f} cand/s, peak {mem_gib('peak')} GiB")
            run["n_candidates"] = len(reqs)
            with torch.no_grad():
                naive_logp(adapter, family, warm[0], images[warm[0].image])
                sync(args.device)
                t = time.perf_counter()
                naive = [naive_logp(adapter, family, r, images[r.image]) for r in reqs[: args.naive]]
                sync(args.device)
            dt = time.perf_counter() - t
            run["naive"] = {"cand_per_s": round(len(naive) / dt, 2), "s": round(dt, 3), "n": len(naive),
                            "max_abs_diff_vs_scan": float(np.max(np.abs(np.array(naive) - scores[: len(naive)])))}
            log(f"{prec}: naive {len(naive) / dt:.2f} cand/s, |naive-scan| {run['naive']['max_abs_diff_vs_scan']:.2e}")
            run["score_std"] = float(scores.std())
            if ref is None and prec == "fp32":
                ref = scores
            if ref is not None:
                d = np.abs(scores - ref)
                margins, ref_margins = scores[0::2] - scores[1::2], ref[0::2] - ref[1::2]
                run["drift_vs_fp32"] = {
                    "max_abs": float(d.max()), "mean_abs": float(d.mean()),
                    "margin_max_abs": float(np.abs(margins - ref_margins).max()),
                    "pairs_flipped": int((np.sign(margins) != np.sign(ref_margins)).sum()),
                    "n_pairs": len(margins), "ref_margin_median_abs": float(np.median(np.abs(ref_margins))),
                }
                log(f"{prec}: drift vs fp32 max {d.max():.3e}, flips {run['drift_vs_fp32']['pairs_flipped']}")
            if prec in args.ftl.split(","):
                run["ftl"] = time_ftl(adapter, card, work, args.edits, args.device)
                log(f"{prec}: FT-L {run['ftl']}")
            if family == "janus" and prec in args.gen.split(","):
                run["gen"] = time_gen(adapter, args.gen_batch, args.device)
                log(f"{prec}: generation {run['gen']}")
        except Exception as e:  # noqa: BLE001 - one failing precision must not lose the others' figures
            run["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            res["errors"].append(f"{prec}: {run['error']}")
            traceback.print_exc()
        finally:
            del adapter
            free()
            dump()
    shutil.rmtree(folder, ignore_errors=True)
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    dump()
    print(json.dumps(res))


def time_ftl(adapter: Any, card: Path, work: Path, edits: int, device: str) -> dict[str, Any]:
    """`run_fix` FT-L in single mode on a synthetic suite (as benchmarks/edit_speed.py), twice: default
    early stopping, and forced to all 30 steps (stop_margin 1e9) so the figure does not hinge on how soon
    random weights reach the margin."""
    sys.path.insert(0, str(Path(__file__).parent))
    from edit_speed import synthetic_suite

    from mllm_audit.runs.fix import run_fix

    suite = synthetic_suite(work / "edit-suite", edits + 4)
    out: dict[str, Any] = {}
    for label, opts in (("default", {}), ("30_steps", {"stop_margin": 1e9})):
        reset_peak()
        with tempfile.TemporaryDirectory() as o:
            t = time.perf_counter()
            r = run_fix(model=str(card), suite=str(suite), editor="ft-l", all_items=True, limit=edits,
                        output=Path(o), adapter=adapter, editor_options=opts, device=device)
            sync(device)
            out[label] = {"s_per_edit": r.results["timings"]["s_per_edit"], "n_edits": r.results["n_edits"],
                          "wall_s": round(time.perf_counter() - t, 2), "peak_gib": mem_gib("peak"),
                          "reliability": r.results["metrics"]["reliability"]}
    return out


def time_gen(adapter: Any, batch: int, device: str) -> dict[str, Any]:
    """Images/s of `generate_images` (CFG pair per image, sampling, VQ decode) at the model's image size."""
    out: dict[str, Any] = {}
    for n in (1, batch):
        reset_peak()
        sync(device)
        t = time.perf_counter()
        imgs = adapter.generate_images(GEN_PROMPTS[:1], n=n, seed=0, batch_size=n)
        sync(device)
        dt = time.perf_counter() - t
        out[f"batch{n}"] = {"images_per_s": round(n / dt, 3), "s": round(dt, 2), "peak_gib": mem_gib("peak"),
                            "size": list(imgs[0].size)}
    return out


if __name__ == "__main__":
    main()
