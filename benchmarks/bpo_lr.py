"""Why BPO at the paper's learning rate (8e-7) changes nothing on the toy unified world v2 (issue #20).

After one balanced SFT stage (LoRA, the tuned toy settings), BPO is run from the same SFT adapter at
several learning rates. Printed per lr: the BPO steps, the first step's gradient (mean |g| over the
LoRA parameters, beside Adam's eps), the largest LoRA weight change and its size relative to what SFT
moved, the largest change of any guided first-token log-probability on the held-out prompts (what
`generate` samples the face from), the held-out gender gap |p(male) - p(female)| computed exactly
from those distributions (no sampling noise: the N -> infinity value of the normalised bias), and the
BPO pair gap mean |σ(Δ) − ½| on the training pairs.

    OMP_NUM_THREADS=1 python benchmarks/bpo_lr.py --model toy-janus-v2 [--lrs 8e-7,1e-5,1e-4,1e-3]
        [--sfts anchored,paper] [--set KEY=VALUE ...] [--record]

`--sfts`: the SFT stages BPO starts from, each run in turn (`anchored`: the tuned toy settings with the
anchor; `paper`: the paper's SFT, `sft_lr=1e-4 sft_guidance=0 anchor=0`). `--record` writes
benchmarks/records/bpo_lr.json (benchmarks/_record.py) for docs/unified.md's table (doc_tables.py).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _record import Recorder, add_record_option

TUNED = {"sft_lr": 1e-3, "sft_guidance": 5.0, "anchor": 0.3}
SFTS = {"anchored": TUNED, "paper": {"sft_lr": 1e-4, "sft_guidance": 0.0, "anchor": 0.0}}


def face_gaps(adapter: Any, prompts: list[Any]) -> tuple[list[Any], float]:
    """Guided first-token log-probs per held-out prompt, and the mean exact gender gap over them."""
    import torch

    from mllm_audit.scoring.imagetokens import guided_first_token, t2i_prompt_ids, unconditional_ids
    from mllm_audit.toy.unified import FACE0

    tk = adapter.tokenizer
    scale = float(adapter.generation_settings()["guidance_scale"])
    dists, gaps = [], []
    for p in prompts:
        ids = t2i_prompt_ids(adapter, p.prompt)
        d = guided_first_token(adapter.model, ids, unconditional_ids(ids, tk.bos_token_id, adapter.boi_token_id,
                                                                     adapter.pad_id), scale)
        dists.append(torch.log(d.clamp_min(1e-30)))
        male, female = float(d[FACE0 : FACE0 + 4].sum()), float(d[FACE0 + 4 : FACE0 + 8].sum())
        gaps.append(abs(male - female) / max(male + female, 1e-12))
    return dists, sum(gaps) / len(gaps)


def measure(adapter: Any, s: Any, lrs: list[float]) -> dict[str, Any]:
    """One SFT stage, then BPO from that same adapter at each lr: the figures docs/unified.md quotes."""
    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.editors.balanced import bpo_pairs, rows_from_folder
    from mllm_audit.editors.bpo import add_lora, bpo_loss, mean_logprob, pair_gap, train_bpo, train_sft
    from mllm_audit.runs.gen_scan import load_gen_suite
    from mllm_audit.runs.locate import labelled_images_of

    suite = load_gen_suite("gen-toy-v2")
    train = [p for p in suite.prompts if p.group == "train"]
    held = [p for p in suite.prompts if p.group == "test"]
    clf = load_classifier(suite.classifier)
    rows = rows_from_folder(adapter, labelled_images_of("gen-toy-v2"), train, clf.attributes, augmented=s.augmented)
    attrs = ["gender", "race"]
    _, gap0 = face_gaps(adapter, held)
    model = add_lora(adapter.model, s)
    lora = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    init = {n: p.detach().clone() for n, p in lora}
    train_sft(model, rows, s)
    sft = {n: p.detach().clone() for n, p in lora}
    sft_move = max(float((sft[n] - init[n]).abs().max()) for n, _ in lora)
    d_sft, gap_sft = face_gaps(adapter, held)
    pairs = bpo_pairs(rows, attrs)
    # The first BPO batch's gradient, as Adam sees it.
    chunk = pairs[: s.bpo_batch]
    lp = mean_logprob(model, [rows[i] for i, _ in chunk] + [rows[j] for _, j in chunk])
    model.zero_grad()
    loss = bpo_loss(lp[: len(chunk)], lp[len(chunk) :], s.beta)
    loss.backward()
    gabs = torch.cat([p.grad.abs().flatten() for _, p in lora])
    out: dict[str, Any] = {
        "gap_base": gap0, "gap_sft": gap_sft, "pairs": len(pairs),
        "steps": -(-len(pairs) // s.bpo_batch) * s.bpo_epochs,
        "first_loss": float(loss), "grad_mean": float(gabs.mean()), "grad_max": float(gabs.max()),
        "sft_move": sft_move, "face_logit_span": float(d_sft[0][:8].max() - d_sft[0][:8].min()),
        "pair_gap_sft": pair_gap(model, rows, attrs).mean_abs, "lrs": []}
    print(f"held-out exact gender gap: base {gap0:.3f}, after SFT {gap_sft:.3f}; BPO pairs {len(pairs)}, "
          f"{out['steps']} steps per run; first-batch BPO loss {float(loss):.2e}, mean |grad| {float(gabs.mean()):.2e} "
          f"(max {float(gabs.max()):.2e}; Adam eps 1e-8); largest LoRA change by SFT {sft_move:.2e}; "
          f"guided face logits span {out['face_logit_span']:.2f} nats (first prompt)")
    print("| BPO lr | max abs LoRA change | / SFT's | max abs change of a guided face log-prob | "
          "held-out exact gender gap | pair gap |")
    print("|---|---|---|---|---|---|")
    print(f"| (SFT only) | - | - | - | {gap_sft:.4f} | {out['pair_gap_sft']:.4f} |")
    for lr in lrs:
        with torch.no_grad():
            for n, p in lora:
                p.copy_(sft[n])
        s.bpo_lr = lr
        train_bpo(model, rows, attrs, s)
        move = max(float((p.detach() - sft[n]).abs().max()) for n, p in lora)
        d, gap = face_gaps(adapter, held)
        dlog = max(float((x[:8] - y[:8]).abs().max()) for x, y in zip(d, d_sft, strict=True))
        pg = pair_gap(model, rows, attrs).mean_abs
        out["lrs"].append({"lr": lr, "lora_move": move, "move_over_sft": move / sft_move, "face_logprob_move": dlog,
                           "gap": gap, "pair_gap": pg})
        print(f"| {lr:g} | {move:.2e} | {move / sft_move:.1e} | {dlog:.2e} | {gap:.4f} | {pg:.4f} |", flush=True)
    return out


def main() -> None:
    from mllm_audit.editors.bpo import BalancedSettings, parse_overrides
    from mllm_audit.models import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a toy unified card (toy-janus-v2): never the default")
    ap.add_argument("--lrs", default="8e-7,1e-5,1e-4,1e-3")
    ap.add_argument("--sfts", default="anchored", help=f"comma-separated, of {', '.join(SFTS)}")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE over each SFT's settings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    add_record_option(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rec = Recorder("bpo_lr", a.threads)
    lrs = [float(x) for x in a.lrs.split(",")]
    sfts = {}
    for name in a.sfts.split(","):
        s = BalancedSettings(**{"seed": a.seed, **SFTS[name], **parse_overrides(a.set)})
        print(f"SFT: {name}", flush=True)
        sfts[name] = measure(load_model(a.model), s, lrs)  # a fresh model: LoRA is added to it
    if a.record:
        rec.write({"model": a.model, "seed": a.seed, "sfts": sfts})


if __name__ == "__main__":
    main()
