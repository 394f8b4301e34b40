"""Editors and negative controls on the toy world's eval split, judged on balance as well as the paper's metrics.

    python benchmarks/balance_table.py [--limit 32] [--threads 1] [--out benchmarks/records/balance_table.json]
    python benchmarks/balance_table.py --model toy-v3 --out benchmarks/records/balance_table_v3.json

`fix` (single mode) on the first `--limit` biased items of the eval split; every row aggregates the
*planted* edits (where mirrors and balance mean something) with 95 % cluster-bootstrap intervals
(clusters: the edited scene). Each weight editor runs under each objective (editors/objectives.py):
`flip` (the paper's), `paired` and `neutral`; MEND and KE use the states adapters/toy-editors ships
(flip: `mend`, `ke`; paired: `mend-paired`, `ke-paired`, trained with `train-editor --objective
paired`; neutral where a `*-neutral` state exists). Controls: control-shift, trained SERAC (an
exact-match lookup on world v2; on v3, whose LM knows the eval paraphrases' words, trained SERAC is a
row and the exact-match control is its scope sharpened), untrained MEND / KE / SERAC (and MEND / KE untrained under
`neutral`, where a neutral state ships). Beside the rows, each objective against `flip` for the same
editor, and each neutral state against its untrained start: the paired difference on the same edits
with its interval and p.

The record (JSON) is what docs/editors.md's tables are rendered from (benchmarks/doc_tables.py); the
command that wrote it is stored in it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATES = ROOT / "adapters" / "toy-editors"
KEYS = ("reliability", "t_generality", "v_generality", "t_locality_top1", "m_locality_top1", "perception_locality_top1",
        "balanced", "transfer_ratio", "mirror_amplified", "mirror_delta", "t_generality_adjusted",
        "v_generality_adjusted", "neighbour_drift", "mirror_spread_after", "m_locality_top10_easyedit",
        "t_locality_top1_easyedit")
EXACT = Path("exact-match")  # plan(): the trained SERAC state with its scope sharpened
COMPARED = ("mirror_amplified", "mirror_delta", "balanced", "reliability", "neighbour_drift")


def plan(states: Path = STATES, exact_match: bool = False) -> list[tuple[str, str, str | None, Path | None]]:
    """(row name, editor, objective, state) in table order; `states`: the model's shipped editor states.

    `exact_match` (toy world v3, whose trained SERAC reaches unseen paraphrases): trained SERAC is a row
    of its own and the exact-match control is its state with the scope sharpened (toy.evaluate)."""
    rows: list[tuple[str, str, str | None, Path | None]] = []
    for ed in ("ft-l", "ft-v"):
        rows += [(f"{ed} {o}", ed, o, None) for o in ("flip", "paired", "neutral")]
    for ed in ("mend", "ke"):
        for o, folder in (("flip", ed), ("paired", f"{ed}-paired"), ("neutral", f"{ed}-neutral")):
            if (states / folder / "state.safetensors").is_file():
                rows.append((f"{ed} {o}", ed, o, states / folder))
        if (states / f"{ed}-neutral" / "state.safetensors").is_file():  # what training under neutral buys
            rows.append((f"{ed} neutral untrained", ed, "neutral", Path("untrained")))
    serac = ([("serac", "serac", None, None), ("serac exact-match (sharpened scope)", "serac", None, EXACT)]
             if exact_match else [("serac (exact-match)", "serac", None, None)])
    rows += [("ike", "ike", None, None), *serac,
             ("control-shift", "control-shift", None, None), ("mend untrained", "mend", None, Path("untrained")),
             ("ke untrained", "ke", None, Path("untrained")), ("serac untrained (no-op)", "serac", None,
                                                               Path("untrained"))]
    return rows


def main() -> None:
    import torch

    from mllm_audit.metrics.edits import aggregate
    from mllm_audit.metrics.paired_edits import paired_edits
    from mllm_audit.models import load_model
    from mllm_audit.runs.fix import run_fix
    from mllm_audit.toy.evaluate import write_exact_match_state, write_untrained_state
    from mllm_audit.util.identity import model_digest

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="toy", help="toy (world v2) or toy-v3; states from adapters/MODEL-editors")
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "records" / "balance_table.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter = load_model(args.model)
    world = {"toy": "toy world v2", "toy-v3": "toy world v3"}.get(args.model, args.model)
    rows: dict[str, dict] = {}
    edits: dict[str, list[dict]] = {}
    states: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, editor, objective, state in plan(ROOT / "adapters" / f"{args.model}-editors",
                                                   exact_match=args.model == "toy-v3"):
            t0 = time.perf_counter()
            if state == Path("untrained"):
                state = write_untrained_state(editor, adapter, Path(tmp) / name.replace(" ", "-"), objective)
            elif state == EXACT:
                state = write_exact_match_state(ROOT / "adapters" / f"{args.model}-editors" / "serac", adapter,
                                                Path(tmp) / "serac-exact")
            elif state is not None:
                states[name] = model_digest(state)[0]
            res = run_fix(model=args.model, editor=editor, editor_state=state, limit=args.limit, objective=objective,
                          adapter=adapter,
                          output=Path(tmp) / f"fix-{name.replace(' ', '-').replace('(', '').replace(')', '')}")
            planted = [r for r in res.edits if r["meta"].get("planted")]
            agg = aggregate(planted, intervals=True)
            rows[name] = {"n": len(planted), **{k: agg[k] for k in KEYS},
                          **{f"{k}_ci_{e}": agg[f"{k}_ci_{e}"] for k in KEYS for e in ("low", "high")}}
            edits[name] = planted
            print(f"# {name}: {len(planted)} planted edits in {time.perf_counter() - t0:.1f} s", flush=True)
    paired: dict[str, dict] = {}
    for name in rows:
        ed, _, obj = name.partition(" ")
        if obj in ("paired", "neutral") and f"{ed} flip" in rows:
            diffs = paired_edits(edits[f"{ed} flip"], edits[name], COMPARED)
            paired[f"{name} - {ed} flip"] = {k: d.to_dict() for k, d in diffs.items()}
        if obj == "neutral untrained" and f"{ed} neutral" in rows:  # trained against its initial state
            diffs = paired_edits(edits[name], edits[f"{ed} neutral"], COMPARED)
            paired[f"{ed} neutral - {name}"] = {k: d.to_dict() for k, d in diffs.items()}
    record = {
        "schema": "mllm-audit/benchmark-record/v1",
        "command": "python benchmarks/balance_table.py " + " ".join(sys.argv[1:]),
        "limit": args.limit,
        "model": args.model,
        "note": f"planted edits of the eval split, {world}; 95 % cluster-bootstrap intervals (clusters: scenes)",
        "states": states,
        "rows": rows,
        "paired_vs_flip": paired,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
