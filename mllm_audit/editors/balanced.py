"""The balanced preference data of the unified-model fix (seed 003): rows of (prompt, image codes, group)
drawn from a labelled image folder (the paper's way) or from the model's own drawings for the
augmented prompts (a deviation, recorded), and the BPO pairs built from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError


@dataclass
class Row:
    """One training example: prompt ids, image token ids, and the image's groups."""

    ids: list[int]
    codes: list[int]
    labels: dict[str, str]
    prompt_key: str
    neutral: bool = True
    uncond: list[int] = field(default_factory=list)


def rows_from_folder(adapter: Any, folder: Path, prompts: Sequence[Any], attributes: dict[str, list[str]],
                     augmented: bool = True) -> list[Row]:
    """Balanced rows: each labelled image of an occupation, under its neutral prompt (and its variants)."""
    import torch

    from mllm_audit.scoring.imagetokens import t2i_prompt_ids, unconditional_ids
    from mllm_audit.suites.labelled import VARIANT_WORDS, _open_images, read_labelled_images, variant_prompt

    labelled = read_labelled_images(folder, attributes)
    by_occ: dict[str, list[dict[str, Any]]] = {}
    for r in labelled:
        if "occupation" not in r:
            raise AuditError(f"{folder}/labels.jsonl: image {r['image']!r} has no 'occupation' (needed to train)")
        by_occ.setdefault(str(r["occupation"]), []).append(r)
    names = list(dict.fromkeys(r["image"] for r in labelled))
    codes: dict[str, list[int]] = {}
    with torch.no_grad():
        for i in range(0, len(names), 32):
            pv = adapter.preprocess(_open_images(Path(folder), names[i : i + 32]))
            tok = adapter.model.model.vqmodel.encode(pv).image_tokens.reshape(pv.shape[0], -1)
            codes.update(zip(names[i : i + 32], tok.tolist(), strict=True))
    tk = adapter.tokenizer
    rows: list[Row] = []
    for p in prompts:
        imgs = by_occ.get(p.occupation, [])
        ids = t2i_prompt_ids(adapter, p.prompt)
        unc = unconditional_ids(ids, tk.bos_token_id, adapter.boi_token_id, adapter.pad_id)
        for r in imgs:
            labels = {a: r[a] for a in attributes if a in r}
            rows.append(Row(ids, codes[r["image"]], labels, p.id, True, unc))
            if augmented:
                for a, words in VARIANT_WORDS.items():
                    if a in labels and labels[a] in words:
                        vid = t2i_prompt_ids(adapter, variant_prompt(p.prompt, words[labels[a]]))
                        rows.append(Row(vid, codes[r["image"]], labels, f"{p.id}/{words[labels[a]]}", False,
                                        unconditional_ids(vid, tk.bos_token_id, adapter.boi_token_id,
                                                          adapter.pad_id)))
    if not any(r.neutral for r in rows):
        raise AuditError(f"{folder}: no labelled image matches a training occupation")
    return rows


@dataclass
class SelfGenerated:
    """What drawing the balanced data from the model itself kept: per prompt, images drawn, images the
    classifier agreed with, (gender, race) cells filled and images kept per cell."""

    drawn: int = 0
    agreed: int = 0
    per_prompt: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"drawn": self.drawn, "agreed": self.agreed,
                "agreement": self.agreed / self.drawn if self.drawn else None, "per_prompt": self.per_prompt}


def _balanced_cells(cells: dict[tuple[str, ...], list[Any]], classes: list[list[str]]
                    ) -> tuple[list[tuple[str, ...]], int, list[str]]:
    """Cells to keep and images per cell so that the first attribute is exactly balanced within each
    class of the second, and the second balanced over the classes where the first is complete.

    Returns (cells, per-cell count, classes of the second attribute dropped for a missing cell).
    One attribute: every class the same count (classes never drawn dropped).
    """
    if len(classes) == 1:
        have: list[tuple[str, ...]] = [(c,) for c in classes[0] if cells.get((c,))]
        m = min((len(cells[k]) for k in have), default=0)
        return have, m, [c for c in classes[0] if (c,) not in have]
    first, second = classes[0], classes[1]
    per = {r: min(len(cells.get((g, r), [])) for g in first) for r in second}
    ok = [r for r in second if per[r] > 0]
    m = min((per[r] for r in ok), default=0)
    return [(g, r) for r in ok for g in first], m, [r for r in second if per[r] == 0]


def rows_from_generations(adapter: Any, clf: Any, prompts: Sequence[Any], per_word: int = 16, seed: int = 0,
                          batch_size: int = 64, augmented: bool = True) -> tuple[list[Row], SelfGenerated]:
    """Balanced rows from the model's own drawings (a deviation: the paper's images come from FLUX.1-dev).

    For each training prompt, `per_word` images of each augmented variant ("..., a male", "..., a black",
    ...); an image is kept when the classifier sees a person of the class the variant asked for, and
    labelled with the classifier's classes; then cells are cut to one size so that gender is exactly
    balanced within each race and races are balanced (`_balanced_cells`); a race with an empty
    (gender, race) cell is dropped and reported, never invented. Codes are the generated tokens.
    """
    import torch

    from mllm_audit.models.families.janus import derive_seed
    from mllm_audit.scoring.imagetokens import t2i_prompt_ids, unconditional_ids
    from mllm_audit.suites.labelled import VARIANT_WORDS, variant_prompt

    attrs = [a for a in VARIANT_WORDS if a in clf.attributes]
    if not attrs:
        raise AuditError(f"classifier {clf.name!r}: classifies none of {', '.join(VARIANT_WORDS)}")
    tk = adapter.tokenizer
    report = SelfGenerated()

    def unc(ids: list[int]) -> list[int]:
        return unconditional_ids(ids, tk.bos_token_id, adapter.boi_token_id, adapter.pad_id)

    rows: list[Row] = []
    for p in prompts:
        cells: dict[tuple[str, ...], list[list[int]]] = {}
        for a in attrs:
            for cls, word in VARIANT_WORDS[a].items():
                text = variant_prompt(p.prompt, word)
                codes: list[list[int]] = []
                for b, start in enumerate(range(0, per_word, max(1, batch_size))):
                    n = min(batch_size, per_word - start)
                    codes.extend(adapter.generate_tokens([text] * n, derive_seed(seed, p.id, word, b)).tolist())
                preds = clf.classify(adapter.decode_images(torch.tensor(codes)), batch_size)
                report.drawn += len(codes)
                for c, pr in zip(codes, preds, strict=True):
                    if pr.person and pr.labels.get(a) == cls and all(x in pr.labels for x in attrs):
                        report.agreed += 1
                        cells.setdefault(tuple(pr.labels[x] for x in attrs), []).append(c)
        keep, m, dropped = _balanced_cells(cells, [list(clf.attributes[a]) for a in attrs])
        report.per_prompt[p.id] = {"cells": len(keep), "per_cell": m, "dropped": dropped}
        ids = t2i_prompt_ids(adapter, p.prompt)
        for key in keep:
            labels = dict(zip(attrs, key, strict=True))
            for c in cells[key][:m]:
                rows.append(Row(ids, c, labels, p.id, True, unc(ids)))
                if augmented:
                    for a in attrs:
                        vid = t2i_prompt_ids(adapter, variant_prompt(p.prompt, VARIANT_WORDS[a][labels[a]]))
                        rows.append(Row(vid, c, labels, f"{p.id}/{VARIANT_WORDS[a][labels[a]]}", False, unc(vid)))
    if not any(r.neutral for r in rows):
        raise AuditError("self-generated balanced data: the classifier agreed with no drawn image")
    return rows, report


def bpo_pairs(rows: Sequence[Row], attributes: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs (i, j) of neutral rows of the same prompt that differ in exactly one attribute."""
    out = []
    by_prompt: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r.neutral:
            by_prompt.setdefault(r.prompt_key, []).append(i)
    for idx in by_prompt.values():
        for x in range(len(idx)):
            for y in range(x + 1, len(idx)):
                a, b = rows[idx[x]].labels, rows[idx[y]].labels
                diff = [k for k in attributes if a.get(k) != b.get(k)]
                if len(diff) == 1:
                    out.append((idx[x], idx[y]))
    return out
