# Over 350 lines: locate's two tests (tokenizer, language model) and the verdict that weighs them.
"""`locate`: is a unified model's generation bias in its image tokenizer or in its language model?

Two tests, after Liu et al. (U-MLLM fairness, arXiv 2502.03429), plus one the paper lacks:

- **Tokenizer probe** (the paper's): a linear probe (multinomial logistic regression, L2, k-fold
  cross-validation) on group-labelled images through the understanding vision tower and through
  the VQ encoder; accuracy and macro-F1 per attribute. High accuracy says the tokenizer *keeps*
  demographic information; it does not say the tokenizer *causes* a skew.
- **VQ round trip** (ours): encode -> quantise -> decode -> classify each labelled image; the share
  of each group's images that keep their label, and the parity min/max over groups. A tokenizer
  that renders one group's codes as another's shows parity well below 1.
- **Language-model test** (the paper's): per neutral prompt, generate N images (classified: the
  majority group) and N more (their token histogram; an independent draw, a choice of ours: see
  `lm_test_prompt`), and N for each demographic-augmented variant ("person" -> male / female /
  white / black / indian / asian); the Jensen-Shannon divergence (base 2) between the codebook
  histograms of the generated image tokens of the neutral prompt and of each variant; a *hit*
  when the variant closest to the neutral prompt
  is the neutral images' majority group. Prompts whose majority share does not exceed chance 1/K
  by `min_margin` (gender: 0.6, race: 0.35 at the default 0.1) are skipped as ambiguous. The hit
  rate gets a Wilson 95 % interval, beside chance 1/K.

Verdict: "language model" when the gender (or any) hit-rate interval lies above chance and every
round-trip parity is at least `min_parity`; "tokenizer" when a parity is below it and no hit rate
is above chance; "both" / "undetermined" otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mllm_audit.errors import AuditError
from mllm_audit.runs.options import check_load_options
from mllm_audit.runs.record import versions
from mllm_audit.runs.writer import RESULTS_SCHEMA, RunWriter, default_run_dir, new_run_id
from mllm_audit.suites.labelled import VARIANT_WORDS, _open_images, read_labelled_images, variant_prompt

LOCATE_SAMPLE_SCHEMA = "mllm-audit/locate-sample/v1"


# ---- statistics ---------------------------------------------------------------------------------------

def jsd_base2(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits between two histograms (normalised here); 0..1."""
    a, b = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return 0.5 * kl(a) + 0.5 * kl(b)


def wilson(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95 % interval of a binomial proportion (NaN, NaN with no trials)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = hits / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def probe_cv(x: np.ndarray, y: np.ndarray, k: int, folds: int = 5, l2: float = 1e-2, seed: int = 0
             ) -> dict[str, float]:
    """Cross-validated multinomial logistic regression (standardised features, L2): accuracy, macro-F1."""
    import torch

    rng = np.random.default_rng(seed)
    fold: Any = np.zeros(len(y), dtype=int)
    for c in range(k):  # stratified: each class dealt round-robin over the folds after a shuffle
        idx = np.flatnonzero(y == c)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % folds
    pred = np.zeros_like(y)
    for f in range(folds):
        tr, te = fold != f, fold == f
        if not te.any() or not tr.any():
            continue
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        xt = torch.tensor((x[tr] - mu) / sd, dtype=torch.float64)
        yt = torch.tensor(y[tr])
        w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure(opt: Any = opt, xt: Any = xt, yt: Any = yt, w: Any = w, b: Any = b) -> Any:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            xe = torch.tensor((x[te] - mu) / sd, dtype=torch.float64)
            pred[te] = (xe @ w + b).argmax(-1).numpy()
    acc = float((pred == y).mean())
    f1s = []
    for c in range(k):
        tp = int(((pred == c) & (y == c)).sum())
        fp, fn = int(((pred == c) & (y != c)).sum()), int(((pred != c) & (y == c)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": acc, "macro_f1": float(np.mean(f1s)) if f1s else float("nan"), "n": int(len(y)),
            "folds": folds}


# ---- labelled images ----------------------------------------------------------------------------------


# ---- the tests ------------------------------------------------------------------------------------------

def tokenizer_tests(adapter: Any, clf: Any, folder: Path, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Linear probes on vision-tower and VQ-encoder features, and the VQ round trip per group."""
    import torch

    rows = read_labelled_images(folder, clf.attributes)
    uniq = list(dict.fromkeys(r["image"] for r in rows))
    first = {r["image"]: r for r in reversed(rows)}
    images = _open_images(Path(folder), uniq)
    model = adapter.model
    feats_v, feats_q, rt_images = [], [], []
    with torch.no_grad():
        for i in range(0, len(images), 32):
            pv = adapter.preprocess(images[i : i + 32])
            feats_v.append(adapter.encode_pixels(pv).float().mean(1).cpu())
            vq = model.model.vqmodel
            feats_q.append(vq.quant_conv(vq.encoder(pv)).flatten(1).float().cpu())
            tokens = vq.encode(pv).image_tokens.reshape(pv.shape[0], -1)
            rt_images.extend(adapter.decode_images(tokens))
    xv, xq = torch.cat(feats_v).numpy(), torch.cat(feats_q).numpy()
    preds = clf.classify(rt_images)
    orig = clf.classify(images)
    out: dict[str, Any] = {"n_images": len(uniq), "probe": {}, "roundtrip": {}}
    for a, classes in clf.attributes.items():
        have = [i for i, n in enumerate(uniq) if first[n].get(a) in classes]
        if not have:
            continue
        y = np.array([classes.index(first[uniq[i]][a]) for i in have])
        out["probe"][a] = {"vision_tower": probe_cv(xv[have], y, len(classes), folds, seed=seed),
                           "vq_encoder": probe_cv(xq[have], y, len(classes), folds, seed=seed),
                           "chance": 1.0 / len(classes)}
        per: dict[str, Any] = {}
        for c in classes:
            idx = [i for i in have if first[uniq[i]][a] == c]
            if not idx:
                continue
            kept = sum(1 for i in idx if preds[i].person and preds[i].labels.get(a) == c)
            base = sum(1 for i in idx if orig[i].person and orig[i].labels.get(a) == c)
            per[c] = {"n": len(idx), "kept": kept / len(idx), "classifier_on_original": base / len(idx)}
        kept = [v["kept"] for v in per.values()]
        out["roundtrip"][a] = {"per_group": per,
                               "parity": (min(kept) / max(kept)) if kept and max(kept) > 0 else 0.0}
    return out


def _draw(adapter: Any, prompt: str, n: int, seed: int, batch_size: int) -> Any:
    """n generated images' token ids [n, T] for one prompt (seeded per batch as generate_images)."""
    import torch

    from mllm_audit.models.families.janus import derive_seed

    out = []
    for b, start in enumerate(range(0, n, batch_size)):
        k = min(batch_size, n - start)
        out.append(adapter.generate_tokens([prompt] * k, derive_seed(seed, b)).cpu())
    return torch.cat(out)


def lm_test_prompt(adapter: Any, clf: Any, prompt: Any, n: int, seed: int, batch_size: int,
                   min_margin: float) -> dict[str, Any]:
    """One neutral prompt: histograms, JSD to each variant, the neutral majority, hit per attribute."""
    import torch

    from mllm_audit.models.families.janus import derive_seed

    size = int(adapter.model.config.vq_config.num_embeddings)
    # Two independent draws of the neutral prompt: one decides the majority, the other gives the
    # histogram. From one draw, the noise that makes a balanced prompt's majority would also pull its
    # histogram toward that group's variant: a balanced LM would score hits above chance.
    neutral = _draw(adapter, prompt.prompt, n, derive_seed(seed, prompt.id, "neutral"), batch_size)
    hist_n = torch.bincount(_draw(adapter, prompt.prompt, n, derive_seed(seed, prompt.id, "histogram"),
                                  batch_size).flatten(), minlength=size).tolist()
    preds = clf.classify(adapter.decode_images(neutral), batch_size)
    rec: dict[str, Any] = {"schema": LOCATE_SAMPLE_SCHEMA, "prompt_id": prompt.id, "prompt": prompt.prompt,
                           "group": prompt.group, "n_images": n, "attributes": {}}
    for a, words in VARIANT_WORDS.items():
        if a not in clf.attributes:
            continue
        classes = clf.attributes[a]
        counts = {c: 0 for c in classes}
        for p in preds:
            if p.person and p.labels.get(a) in counts:
                counts[p.labels[a]] += 1
        total = sum(counts.values())
        major, share = (max(counts.items(), key=lambda kv: kv[1]) if total else (None, 0))
        share = share / total if total else 0.0
        jsd = {}
        for c, word in words.items():
            if c not in classes:
                continue
            toks = _draw(adapter, variant_prompt(prompt.prompt, word), n, derive_seed(seed, prompt.id, word),
                         batch_size)
            jsd[c] = jsd_base2(hist_n, torch.bincount(toks.flatten(), minlength=size).tolist())
        closest = min(jsd, key=lambda k: jsd[k]) if jsd else None
        ambiguous = share < 1.0 / len(classes) + min_margin
        rec["attributes"][a] = {"counts": counts, "majority": major, "majority_share": share, "jsd": jsd,
                                "closest": closest, "skipped": ambiguous,
                                "hit": None if ambiguous else bool(closest == major)}
    return rec


def lm_summary(records: Sequence[dict[str, Any]], attributes: dict[str, list[str]]) -> dict[str, Any]:
    out = {}
    for a in VARIANT_WORDS:
        if a not in attributes:
            continue
        rs = [r["attributes"][a] for r in records if a in r["attributes"]]
        scored = [r for r in rs if not r["skipped"]]
        hits = sum(1 for r in scored if r["hit"])
        lo, hi = wilson(hits, len(scored))
        chance = 1.0 / len([c for c in VARIANT_WORDS[a] if c in attributes[a]])
        out[a] = {"hits": hits, "n": len(scored), "skipped": len(rs) - len(scored),
                  "hit_rate": hits / len(scored) if scored else None, "ci_low": lo, "ci_high": hi,
                  "chance": chance, "above_chance": bool(scored) and lo > chance}
    return out


def verdict(lm: dict[str, Any], tok: dict[str, Any] | None, min_parity: float) -> tuple[str, str]:
    """(verdict, reason): language model, tokenizer, both, or undetermined."""
    lm_flag = [a for a, r in lm.items() if r["above_chance"]]
    low = [a for a, r in (tok or {}).get("roundtrip", {}).items() if r["parity"] < min_parity]
    if lm_flag and not low:
        why = f"hit rate above chance for {', '.join(lm_flag)}"
        return "language model", why + ("" if tok else "; tokenizer not tested (no labelled images)")
    if low and not lm_flag:
        return "tokenizer", f"VQ round-trip parity below {min_parity} for {', '.join(low)}; hit rates at chance"
    if low and lm_flag:
        return "both", f"hit rate above chance ({', '.join(lm_flag)}) and parity below {min_parity} ({', '.join(low)})"
    return "undetermined", "no hit rate above chance" + ("" if tok else "; tokenizer not tested")


def _json_safe(x: Any) -> Any:
    """NaN / inf -> None, recursively (results.json is strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


@dataclass
class LocateResult:
    run_dir: Path
    results: dict[str, Any]
    samples: list[dict[str, Any]]


def suite_option(suite_spec: str | Path, key: str) -> Any:
    """An optional key of a generation suite's YAML (None for a .jsonl suite or a missing key)."""
    from mllm_audit.runs.gen_scan import registered_gen_suites
    from mllm_audit.util.files import read_yaml_mapping

    path = registered_gen_suites().get(str(suite_spec)) or Path(str(suite_spec))
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return None
    return read_yaml_mapping(path).get(key)


def labelled_images_of(suite_spec: str | Path) -> Path | None:
    """The suite YAML's `labelled_images` folder (relative to the YAML), if it names one."""
    from mllm_audit.runs.gen_scan import registered_gen_suites

    rel = suite_option(suite_spec, "labelled_images")
    if not rel:
        return None
    path = registered_gen_suites().get(str(suite_spec)) or Path(str(suite_spec))
    return (path.parent / str(rel)).resolve()


def run_locate(
    model: str = "toy-janus-v2",
    suite: str | Path = "gen-toy-v2",
    images: Path | None = None,
    classifier: str | Path | None = None,
    images_per_prompt: int = 64,
    output: Path | None = None,
    seed: int = 0,
    batch_size: int = 64,
    limit: int | None = None,
    min_margin: float = 0.1,
    min_parity: float = 0.9,
    folds: int = 5,
    device: str = "cpu",
    revision: str | None = None,
    trust_generic: bool = False,
    *,
    adapter: Any = None,
    classifier_obj: Any = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
) -> LocateResult:
    """Run the tokenizer tests (when labelled images are given or the suite names them) and the LM test."""
    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.models import load_model
    from mllm_audit.models.base import LoadOptions
    from mllm_audit.runs.gen_scan import load_gen_suite

    t0 = time.perf_counter()
    if images_per_prompt < 2:
        raise AuditError(f"--images-per-prompt must be at least 2, got {images_per_prompt}")
    if not 0 <= min_margin <= 1 or not 0 <= min_parity <= 1:
        raise AuditError("--min-margin and --min-parity must lie in [0, 1]")
    check_load_options(device=device)
    the_suite = load_gen_suite(suite)
    prompts = the_suite.prompts[:limit] if limit else the_suite.prompts
    for p in prompts:
        variant_prompt(p.prompt, "x")  # every prompt must have a "person" to replace
    out_dir = Path(output) if output is not None else None
    if out_dir is not None:  # a model, suite or user's folder is never a run folder (util/folders.py)
        from mllm_audit.util.folders import check_run_folder

        check_run_folder(out_dir, "locate", resume=False)
    folder = Path(images) if images is not None else labelled_images_of(suite)
    if adapter is None:
        adapter = load_model(model, LoadOptions(device=device, revision=revision, trust_generic=trust_generic))
    inner = getattr(adapter.model, "model", None)
    if not adapter.generates_images or not all(hasattr(inner, a) for a in ("vqmodel", "generation_head")):
        raise AuditError(f"model {adapter.card.name!r} (family {adapter.card.family}) is not a VQ unified model "
                         "with a generation head (janus)")
    clf = classifier_obj or load_classifier(classifier or the_suite.classifier, device=device)
    out_dir = out_dir or default_run_dir("locate", adapter.card.name, the_suite.name)
    tok = tokenizer_tests(adapter, clf, folder, folds, seed) if folder is not None else None
    results: dict[str, Any] = {
        "schema": RESULTS_SCHEMA, "command": "locate", "run_id": new_run_id(), "complete": False,
        "model": adapter.identity(), "suite": the_suite.identity(), "classifier": clf.identity(),
        "versions": versions(), "seed": seed,
        "options": {"images_per_prompt": images_per_prompt, "batch_size": batch_size, "limit": limit,
                    "min_margin": min_margin, "min_parity": min_parity, "folds": folds,
                    "labelled_images": str(folder) if folder else None,
                    "generation": adapter.generation_settings()},  # type: ignore[union-attr]
        "tokenizer": _json_safe(tok),
    }
    records = []
    with RunWriter(out_dir, results["run_id"]) as writer:
        writer.write_results(results)
        tick = progress(len(prompts)) if progress else None
        for p in prompts:
            rec = _json_safe(lm_test_prompt(adapter, clf, p, images_per_prompt, seed, batch_size, min_margin))
            writer.append([rec])
            records.append(rec)
            if tick:
                tick(1)
        lm = _json_safe(lm_summary(records, clf.attributes))
        v, why = verdict(lm, tok, min_parity)
        results.update({"complete": True, "language_model": lm, "verdict": v, "verdict_reason": why,
                        "timings": {"total_s": round(time.perf_counter() - t0, 3)}})
        writer.write_results(results)
    return LocateResult(out_dir, results, records)


