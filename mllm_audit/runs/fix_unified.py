"""`fix --editor sft|bpo` for unified models: balanced SFT (+ BPO) of the LM with LoRA, measured on
held-out prompts before and after each stage.

Train prompts are the suite's prompts of group `train_group` (default "train") that have labelled
images; every other prompt is held out and measured: the generation bias (normalised, with the
balanced-model floor for the N drawn), per suite group (held-out occupations, controls); fidelity
(the share of images a fidelity classifier reads as the prompt's `meta.prop`, or the CLIP score when
the classifier is CLIP zero-shot); adherence to augmented prompts (the share of images of
"..., a male" etc. classified as that group); the blank-image understanding probe beside it; and the
BPO pair gap on the training pairs (mean |σ(Δ) − ½|, 0 = indifferent). Rows: base, sft, and with
`--editor bpo` sft+bpo, side by side. Each stage's model is saved whole (LoRA merged, card named
base+stage) under `save/<stage>`;
the numbers are those of exactly those weights, measured in this process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.runs.record import versions
from mllm_audit.runs.writer import RESULTS_SCHEMA, RunWriter, default_run_dir, new_run_id
from mllm_audit.util.folders import OutputFolder

UNIFIED_EDITORS = ("sft", "bpo")


@dataclass
class UnifiedFixResult:
    run_dir: Path
    results: dict[str, Any]


SAVE_KIND = "unified-fix models"  # the --save folder holding one model folder per stage

def _fidelity(images: list[Any], prompts: list[Any], fid: Any, batch_size: int) -> float | None:
    """Share of images whose fidelity-classifier label is the prompt's `meta.prop` (None without one)."""
    if fid is None:
        return None
    preds = fid.classify(images, batch_size)
    attr = next(iter(fid.attributes))
    ok = [p.labels.get(attr) == pr.meta.get("prop") for p, pr in zip(preds, prompts, strict=True)
          if pr.meta.get("prop") is not None]
    return sum(ok) / len(ok) if ok else None


def _clip_score(images: list[Any], texts: list[str], clf: Any) -> float | None:
    """Mean 100 x cosine(image, text) with the classifier's own CLIP (zero-shot classifiers only)."""
    import torch

    if getattr(clf, "tokenizer", None) is None:
        return None
    img = clf.image_features(images)
    enc = clf.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(clf.device)
    with torch.no_grad():
        t = clf.model.get_text_features(**enc, return_dict=True).pooler_output.float()
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return float(100 * (img * t).sum(-1).clamp_min(0).mean())


def measure(adapter: Any, suite: Any, prompts: list[Any], clf: Any, fid: Any, n: int, n_adherence: int,
            seed: int, batch_size: int, stage: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One stage's numbers on the held-out prompts (see the module docstring) and its sample lines."""
    from mllm_audit.metrics.generation import gen_summary
    from mllm_audit.models.families.janus import derive_seed
    from mllm_audit.runs.gen_scan import _prompt_seed, prompt_record, understanding_scores
    from mllm_audit.suites.labelled import VARIANT_WORDS, variant_prompt

    und = understanding_scores(adapter, suite, prompts, batch_size) if suite.understanding else {}
    samples, all_images, owners = [], [], []
    for p in prompts:
        pseed = _prompt_seed(seed, p.id)
        images = adapter.generate_images([p.prompt], n, pseed, batch_size)
        names = [f"{p.id}/{k}" for k in range(n)]
        rec = prompt_record(stage, p, pseed, names, clf.classify(images, batch_size), clf.attributes, und.get(p.id))
        rec.pop("predictions")
        samples.append(rec)
        all_images.extend(images)
        owners.extend([p] * n)
    summary = gen_summary(samples, clf.attributes)
    fidelity = _fidelity(all_images, owners, fid, batch_size)
    clip = None if fid is not None else _clip_score(all_images, [o.prompt for o in owners], clf)
    # Adherence: augmented prompts of the held-out, non-control prompts.
    hits: dict[str, list[int]] = {a: [0, 0] for a in VARIANT_WORDS if a in clf.attributes}
    for p in prompts:
        if p.group == "control":
            continue
        for a, words in VARIANT_WORDS.items():
            if a not in hits:
                continue
            for cls, word in words.items():
                imgs = adapter.generate_images([variant_prompt(p.prompt, word)], n_adherence,
                                               derive_seed(seed, p.id, word), batch_size)
                for pr in clf.classify(imgs, batch_size):
                    hits[a][0] += int(pr.person and pr.labels.get(a) == cls)
                    hits[a][1] += 1
    adherence = {a: (h / t if t else None) for a, (h, t) in hits.items()}
    return {"summary": summary, "fidelity": fidelity, "clip_score": clip, "adherence": adherence}, samples


def run_unified_fix(
    model: str = "toy-janus-v2",
    suite: str | Path = "gen-toy-v2",
    editor: str = "bpo",
    images: Path | None = None,
    classifier: str | Path | None = None,
    fidelity_classifier: str | Path | None = None,
    images_per_prompt: int = 64,
    adherence_images: int = 16,
    train_group: str = "train",
    output: Path | None = None,
    save: Path | None = None,
    seed: int = 0,
    batch_size: int = 64,
    settings: Any = None,
    balanced_from: str = "images",
    self_images_per_word: int = 16,
    device: str = "cpu",
    adapter: Any = None,
    classifier_obj: Any = None,
    fidelity_obj: Any = None,
    log: Callable[[str], None] | None = None,
) -> UnifiedFixResult:
    """Balanced SFT (+ BPO) with LoRA, each stage measured on the held-out prompts.

    `balanced_from`: "images" (the labelled folder: the paper's way) or "generations" (the model's own
    drawings for the augmented prompts, kept where the classifier agrees: a deviation, recorded).
    """
    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.editors.balanced import rows_from_folder
    from mllm_audit.editors.bpo import BalancedSettings, add_lora, pair_gap, train_bpo, train_sft
    from mllm_audit.models import load_model
    from mllm_audit.models.base import LoadOptions
    from mllm_audit.runs.gen_scan import load_gen_suite
    from mllm_audit.runs.locate import labelled_images_of, suite_option

    t0 = time.perf_counter()
    if balanced_from not in ("images", "generations"):
        raise AuditError(f"balanced data from {balanced_from!r}: expected images or generations")
    if editor not in UNIFIED_EDITORS:
        raise AuditError(f"unknown unified-model editor {editor!r} (known: {', '.join(UNIFIED_EDITORS)})")
    s = settings or BalancedSettings(seed=seed)
    the_suite = load_gen_suite(suite)
    train = [p for p in the_suite.prompts if p.group == train_group]
    held = [p for p in the_suite.prompts if p.group != train_group]
    if not train or not held:
        raise AuditError(f"suite {the_suite.name!r}: needs prompts of group {train_group!r} (trained on) and "
                         "of other groups (held out, measured)")
    folder = Path(images) if images is not None else labelled_images_of(suite)
    if folder is None and balanced_from == "images":
        raise AuditError("balanced data: give --images DIR (labels.jsonl: image, gender, race, occupation)")
    out_dir = Path(output) if output is not None else None
    if out_dir is not None and (out_dir / "results.json").exists():
        raise AuditError(f"{out_dir} already holds a run: choose another --output")
    if save is not None:  # a new folder for the stages' models (util/outputs.py: nothing is overwritten)
        from mllm_audit.util.outputs import check_folder

        check_folder(Path(save), SAVE_KIND, "--save")
    if adapter is None:
        adapter = load_model(model, LoadOptions(device=device))
    inner = getattr(adapter.model, "model", None)
    if not adapter.generates_images or not all(hasattr(inner, a) for a in ("vqmodel", "generation_head")):
        raise AuditError(f"model {adapter.card.name!r}: --editor {editor} needs a VQ unified model (janus)")
    clf = classifier_obj or load_classifier(classifier or the_suite.classifier, device=device)
    fidelity_classifier = fidelity_classifier or suite_option(suite, "fidelity_classifier")
    fid = fidelity_obj or (load_classifier(fidelity_classifier, device=device) if fidelity_classifier else None)
    selfgen = None
    if balanced_from == "generations":
        from mllm_audit.editors.balanced import rows_from_generations

        rows, selfgen = rows_from_generations(adapter, clf, train, self_images_per_word, seed, batch_size, s.augmented)
    else:
        rows = rows_from_folder(adapter, folder, train, clf.attributes, augmented=s.augmented)  # type: ignore[arg-type]
    out_dir = out_dir or default_run_dir("fix", adapter.card.name, the_suite.name)
    attrs = [a for a in ("gender", "race") if a in clf.attributes]
    results: dict[str, Any] = {
        "schema": RESULTS_SCHEMA, "command": "fix", "run_id": new_run_id(), "complete": False,
        "editor": {"name": editor, "settings": s.as_dict()}, "model": adapter.identity(),
        "suite": the_suite.identity(), "classifier": clf.identity(),
        "fidelity_classifier": fid.identity() if fid else None, "versions": versions(), "seed": seed,
        "options": {"images_per_prompt": images_per_prompt, "adherence_images": adherence_images,
                    "train_group": train_group, "batch_size": batch_size, "balanced_from": balanced_from,
                    "labelled_images": str(folder) if balanced_from == "images" else None,
                    "self_generated": selfgen.as_dict() if selfgen else None,
                    "generation": adapter.generation_settings()},  # type: ignore[union-attr]
        "train_prompts": [p.id for p in train], "held_out_prompts": [p.id for p in held],
        "n_rows": len(rows), "stages": {},
    }
    with RunWriter(out_dir, results["run_id"]) as writer:
        writer.write_results(results)

        def stage(name: str, model_now: Any, training: dict[str, Any] | None) -> None:
            m, samples = measure(adapter, the_suite, held, clf, fid, images_per_prompt, adherence_images, seed,
                                 batch_size, name)
            m["pair_gap"] = pair_gap(model_now, rows, attrs).mean_abs
            m["training"] = training
            # Judged on the controls too: a control moved away from balance fails the fix's check, on the
            # exact guided distribution where the model's images can be enumerated (runs/gen_exact.py).
            from mllm_audit.runs.gen_exact import exact_controls

            # Without the base's exact shares there is nothing to compare a stage's with: not enumerated again.
            exact = (exact_controls(adapter, clf, held, batch_size) if name == "base" or isinstance(base_exact[0], dict)
                     else None)
            if name == "base":
                base_samples[:] = samples
                base_exact.append(exact)
            elif isinstance(exact, dict) and isinstance(base_exact[0], dict):
                from mllm_audit.metrics.gen_intervals import control_check_exact

                m["control_check"] = control_check_exact(base_exact[0], exact)
            else:
                from mllm_audit.metrics.gen_intervals import control_check

                m["control_check"] = {**control_check(base_samples, samples, clf.attributes), "exact_unavailable":
                                      exact if isinstance(exact, str) else base_exact[0]}  # the base's reason
            results["stages"][name] = m
            writer.append({"stage": name, **r} for r in samples)
            writer.write_results(results)
            if log:
                g = m["summary"].get("test", m["summary"]["all"]).get("gender", {})
                def f3(x: Any) -> str:
                    return "-" if x is None else f"{x:.3f}"

                adherence = ", ".join(f"{a} {f3(v)}" for a, v in (m["adherence"] or {}).items())
                cc = m.get("control_check")
                controls = "" if cc is None else (f" controls ({cc['method']}) " +
                                                  ("pass" if cc["passed"] else "FAIL " + ", ".join(cc["failed"])))
                log(f"{name}: held-out gender {f3(g.get('normalised'))} fidelity {f3(m['fidelity'])} "
                    f"adherence {adherence or '-'} pair gap {m['pair_gap']:.4f}{controls}")

        base = adapter.model
        base_samples: list[dict[str, Any]] = []
        base_exact: list[Any] = []
        stage("base", base, None)
        peft_model = add_lora(base, s)
        adapter.model = base  # LoRA layers sit inside the base model's modules: generation uses them
        info = train_sft(peft_model, rows, s, log)
        stage("sft", peft_model, info)
        # The stages' folders are built under a temporary sibling (util/folders.OutputFolder, as fix_save and
        # save_merged build theirs) and renamed into place with the manifest: a killed run leaves no half
        # --save folder, and the next run removes the temporary one.
        saving = OutputFolder(Path(save), "--save", "fix", kind=SAVE_KIND) if save is not None else None
        try:
            if saving is not None:  # a whole model folder (merged weights): every command loads it
                from mllm_audit.editors.merged import save_merged

                tmp = saving.open()
                save_merged(peft_model, adapter, tmp / "sft", f"{adapter.card.name}+sft",
                            f"{adapter.card.name} after fix --editor sft")
            if editor == "bpo":
                info = train_bpo(peft_model, rows, attrs, s, log)
                stage("sft+bpo", peft_model, info)
                if saving is not None:
                    save_merged(peft_model, adapter, tmp / "sft+bpo", f"{adapter.card.name}+sft+bpo",
                                f"{adapter.card.name} after fix --editor bpo")
            if saving is not None:
                saving.commit()
        finally:
            if saving is not None and not saving.committed:
                saving.abandon()
        results.update({"complete": True, "saved": str(save) if save else None,
                        "timings": {"total_s": round(time.perf_counter() - t0, 3)}})
        writer.write_results(results)
    return UnifiedFixResult(out_dir, results)


def dump(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=1)
