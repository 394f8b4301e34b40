"""Renderers for the toy worlds' tables (studies, editors, the unified world), used by doc_tables.py.

Each takes a record written by its script's `--record` (benchmarks/_record.py) and returns the table's
lines; doc_tables.TABLES names the record file each table is rendered from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _f(v: Any, nd: int = 3) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


# ---- the paper's studies (benchmarks/study_tables.py) ------------------------------------------------


def render_study(rec: dict[str, Any]) -> list[str]:
    """The study's own markdown table (report/studies.py, what `mllm-audit study` prints)."""
    from mllm_audit.report.studies import markdown_table

    f = rec["figures"]
    states = ", ".join(f"{k} = {v.split('adapters/')[-1]}" for k, v in sorted(f["editor_states"].items()))
    head = (f"Model `{f['model']}`, suite `{f['suite']}`, {f['n_items']} biased eval items"
            + (f", {f['train_steps']} training steps where an editor is trained here" if f["train_steps"] else "")
            + (f"; shipped states: {states}" if states else "") + ".")
    return [head, "", *markdown_table(f).splitlines()]


# ---- editors on the toy world (faithful_editors.py, editor_table.py) ----------------------------------


def render_faithful(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    out = [f"Model `{f['model']}`, the first {f['n_items']} biased eval items, one edit at a time.", "",
           "| editor | variant | state | Rel | T-Gen | V-Gen | T-Loc | T-KL | M-Loc | M-KL | parity | s/edit |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in f["rows"]:
        par = f"{r['parity_before']:.2f} -> {r['parity_after']:.2f}" if r.get("parity_after") is not None else "—"
        out.append(f"| {r['editor']} | {r['variant']} | {r['state'] or '—'} | " + " | ".join(
            _f(r.get(k)) for k in ("reliability", "t_generality", "v_generality", "t_locality_top1", "t_locality_kl",
                                   "m_locality_top1", "m_locality_kl")) + f" | {par} | {_f(r['edit_s'], 2)} |")
    return out


def render_paper_table2(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    out = [f"Model `{f['model']}`, the first {f['limit']} biased eval items (planted ones counted), "
           "easyedit protocol, in %: toy / paper.", "",
           "| editor | task | n | Reliability | T-Generality | V-Generality | T-Locality | M-Locality |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, paper in f["paper_table2"].items():
        for task in ("ic", "vqa"):
            m = f["by_task"].get(name, {}).get(task)
            if m is None:
                continue
            cells = [f"{_f(None if m.get(k) is None else 100 * m[k], 1)} / {p:.1f}"
                     for k, p in zip(f["five_easyedit"], paper[task], strict=True)]
            out.append(f"| {name} | {task} | {m['n']} | " + " | ".join(cells) + " |")
    return out


# ---- the unified world (locate_table.py, unified_fidelity.py, bpo_lr.py, edit_transfer.py) ----------


def _hits(lm: dict[str, Any]) -> str:
    if not lm.get("n"):
        return f"— ({lm.get('skipped', 0)} ambiguous)"
    amb = f" ({lm['skipped']} ambiguous)" if lm.get("skipped") else ""
    return f"{lm['hits']}/{lm['n']} = {lm['hit_rate']:.3f} [{lm['ci_low']:.3f}, {lm['ci_high']:.3f}]{amb}"


def render_locate(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    out = ["| model | gender hit rate [Wilson 95 %] | race hit rate | VQ round-trip parity gender / race | "
           "probe accuracy, VQ encoder gender / race | vision tower gender / race | verdict |",
           "|---|---|---|---|---|---|---|"]
    for m in f["models"]:
        lm, rt, pr = m["language_model"], m["roundtrip_parity"], m["probe_accuracy"]
        out.append(f"| {m['model']} | {_hits(lm['gender'])} | {_hits(lm['race'])} | "
                   f"{rt['gender']:.2f} / {rt['race']:.2f} | "
                   f"{pr['gender']['vq_encoder']:.3f} / {pr['race']['vq_encoder']:.3f} | "
                   f"{pr['gender']['vision_tower']:.3f} / {pr['race']['vision_tower']:.3f} | {m['verdict']} |")
    return out


def render_fidelity(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    out = [f"Model `{f['model']}`.", "",
           "| config | seed | base gender / control / fidelity | SFT gender / control / fidelity (drop) | "
           "SFT+BPO gender / control / fidelity (drop) | adherence gender / race (SFT+BPO) |",
           "|---|---|---|---|---|---|"]
    for r in f["runs"]:
        st = {s["stage"]: s for s in r["stages"]}
        b, last = st["base"], r["stages"][-1]
        cells = [f"{b['test']:.3f} / {b['control']:.3f} / {b['fidelity']:.3f}"]
        for name in ("sft", "sft+bpo"):
            s = st.get(name)
            cells.append("—" if s is None else
                         f"{s['test']:.3f} / {s['control']:.3f} / {s['fidelity']:.3f} ({s['drop']:+.3f})")
        cells.append(f"{last['adh_g']:.3f} / {last['adh_r']:.3f}")
        out.append(f"| {r['config']} | {r['seed']} | " + " | ".join(cells) + " |")
    return out


BPO_SFT_LABELS = {"anchored": "anchored (`--sfts anchored`)",
                  "paper": "paper's SFT (`--sfts paper`: sft_lr 1e-4, sft_guidance 0, anchor 0)"}


def _lr(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def render_bpo_lr(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    lrs = [_lr(x["lr"]) for x in next(iter(f["sfts"].values()))["lrs"]]
    out = [f"Model `{f['model']}`, seed {f['seed']}; held-out gender gap |p(male) − p(female)| from the exact guided "
           "face distribution.", "",
           "| SFT before BPO | gap before SFT | gap after SFT | " + " | ".join(f"BPO lr {lr}" for lr in lrs) + " |",
           "|---|---|---|" + "---|" * len(lrs)]
    for name, s in f["sfts"].items():
        out.append(f"| {BPO_SFT_LABELS.get(name, name)} | {s['gap_base']:.4f} | {s['gap_sft']:.4f} | "
                   + " | ".join(f"{x['gap']:.4f}" for x in s["lrs"]) + " |")
    out += ["", "| SFT before BPO | BPO steps | first-batch BPO loss | mean \\|grad\\| | SFT's largest LoRA change | "
            f"BPO lr {lrs[0]}: largest LoRA change (/ SFT's) | largest guided face log-prob change |",
            "|---|---|---|---|---|---|---|"]
    for name, s in f["sfts"].items():
        x = s["lrs"][0]
        out.append(f"| {name} | {s['steps']} | {s['first_loss']:.1e} | {s['grad_mean']:.1e} | {s['sft_move']:.1e} | "
                   f"{x['lora_move']:.2e} ({x['move_over_sft']:.1e}) | {x['face_logprob_move']:.1e} |")
    return out


def render_edit_transfer(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    b_u, b_g = f["before"]["understanding"], f["before"]["generation"]
    out = [f"Model `{f['model']}`, N {f['images_per_prompt']}; before -> after.", "",
           "| editor | und. % biased | und. mean margin | gen. train norm. | gen. test norm. | share over-drawn "
           "| prop fidelity |", "|---|---|---|---|---|---|---|"]
    for r in f["rows"]:
        u, g = r["understanding"], r["generation"]
        cells = [f"{b_u['pct_biased']:.1f} -> {u['pct_biased']:.1f}",
                 f"{b_u['mean_margin']:+.3f} -> {u['mean_margin']:+.3f}"]
        for k in ("train", "test", "share_overdrawn", "fidelity"):
            cells.append(f"{b_g[k]:.3f} -> {g[k]:.3f}" if r["weights_changed"] else f"{b_g[k]:.3f} (unchanged)")
        out.append(f"| {r['editor']} | " + " | ".join(cells) + " |")
    return out


TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "study-modules": ("study_modules.json", render_study),
    "study-cross-bias": ("study_cross_bias.json", render_study),
    "study-batch": ("study_batch.json", render_study),
    "faithful-editors": ("faithful_editors.json", render_faithful),
    "paper-table2": ("editor_table.json", render_paper_table2),
    "locate": ("locate_table.json", render_locate),
    "unified-fidelity": ("unified_fidelity.json", render_fidelity),
    "bpo-lr": ("bpo_lr.json", render_bpo_lr),
    "edit-transfer-untrained": ("edit_transfer_untrained.json", render_edit_transfer),
    "edit-transfer-quick": ("edit_transfer_quick.json", render_edit_transfer),
}
