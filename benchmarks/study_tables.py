"""The debias-editing paper's three studies on a toy world, recorded for docs/editors.md.

    OMP_NUM_THREADS=1 python benchmarks/study_tables.py --study modules --model toy --limit 24 \
        --train-steps 150 --record
    OMP_NUM_THREADS=1 python benchmarks/study_tables.py --study cross-bias --model toy --editors ft-l,mend,ke \
        --limit 16 --train-steps 100 --record
    OMP_NUM_THREADS=1 python benchmarks/study_tables.py --study batch --model toy \
        --editors ft-l,ft-v,ike,mend,ke --limit 64 --record

Each run is `mllm-audit study ...` through its API (`runs.studies.run_study`, the CLI's code) into a
temporary run folder; `--record` writes benchmarks/records/study_<study>.json (benchmarks/_record.py)
with the study's table rows and paired comparisons, from which benchmarks/doc_tables.py renders the
document's table. The model is named on the command line, never the default: the record says which.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _record import Recorder, add_record_option

# What a row keeps in the record: the columns the table shows and the debias metrics beside them.
KEEP = ("editor", "module", "edited_as", "batch", "edit_type", "eval_type", "protocol", "n", "reliability",
        "t_generality", "v_generality", "t_locality_top1", "m_locality_top1", "t_locality_kl", "m_locality_kl",
        "parity_before", "parity_after", "parity_planted", "balanced", "mirror_amplified", "neighbour_drift",
        "edit_s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, choices=("modules", "cross-bias", "batch"))
    ap.add_argument("--model", required=True, help="a card name (toy, toy-v3): never the default")
    ap.add_argument("--suite", default="toy")
    ap.add_argument("--editors", default=None, help="comma-separated (the study's own default when left out)")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--sizes", default="1,4,16,64")
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--editor-state", action="append", default=[], help="NAME=DIR, as `study --editor-state`")
    ap.add_argument("--threads", type=int, default=1)
    add_record_option(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from mllm_audit.report.studies import markdown_table
    from mllm_audit.runs.studies import run_study

    rec = Recorder(f"study_{a.study.replace('-', '_')}", a.threads)
    states = dict(s.split("=", 1) for s in a.editor_state)
    with tempfile.TemporaryDirectory() as tmp:
        res = run_study(a.study, model=a.model, suite=a.suite, editors=a.editors.split(",") if a.editors else None,
                        limit=a.limit, sizes=[int(s) for s in a.sizes.split(",")], train_steps=a.train_steps,
                        editor_state={k: Path(v) for k, v in states.items()}, output=Path(tmp) / "run",
                        on_row=lambda r: print(f"row: {r.get('editor')} {r.get('module', r.get('batch', ''))}"
                                               f"{r.get('edit_type', '')}->{r.get('eval_type', '')}", flush=True))
    r = res.results
    print(markdown_table(r))
    if a.record:
        rec.write({"study": a.study, "model": r["model"]["name"], "suite": r["suite"]["name"], "n_items": r["n_items"],
                   "limit": a.limit, "train_steps": a.train_steps, "editor_states": r["editor_states"],
                   "protocol": r["protocol"], "table": [{k: row[k] for k in KEEP if k in row} for row in r["table"]],
                   "paired": r["paired"], "paired_cluster": r["paired_cluster"]})


if __name__ == "__main__":
    main()
