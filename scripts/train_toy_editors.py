#!/usr/bin/env python3
"""Train the toy world's shipped editor states: adapters/toy-editors/{mend,ke,serac}.

Usage: python scripts/train_toy_editors.py [--editors mend,ke,serac] [--threads 1] [--model toy]

`--model toy-v3` trains toy world v3's states into adapters/toy-v3-editors (the card `toy-v3` names
them); an editor name `mend-paired` / `ke-neutral` trains that editor under `train-editor --objective`.

Each is `train-editor --editor NAME` on the toy suite with the editor's defaults (the faithful
variants), as `mllm-audit train-editor` would run it; the toy card (adapters/toy.yaml,
`edit.states`) points `fix --editor NAME` at them. Machine paths in config.json are written
relative to the repository (the model is still identified by the sha256 of its files). A few
CPU minutes in all; an existing state folder is replaced only after the new one is trained.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _relative(value: object) -> object:
    """Absolute paths under the repository, anywhere in a string, made relative to it (recursively)."""
    if isinstance(value, dict):
        return {k: _relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v) for v in value]
    if isinstance(value, str):
        return value.replace(str(ROOT) + "/", "")
    return value


def main() -> None:
    from mllm_audit.models import load_model
    from mllm_audit.runs.train_editor import train_editor

    ap = argparse.ArgumentParser()
    ap.add_argument("--editors", default="mend,ke,serac")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="toy")
    args = ap.parse_args()
    dest = ROOT / "adapters" / f"{args.model}-editors"
    adapter = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.editors.split(","):
            out = Path(tmp) / name
            editor, _, objective = name.partition("-")
            res = train_editor(editor, model=args.model, suite="toy", output=out, adapter=adapter,
                               threads=args.threads, objective=objective or None)
            cfg = json.loads((out / "config.json").read_text())
            (out / "config.json").write_text(json.dumps(_relative(cfg), indent=2) + "\n")
            final = dest / name
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(out, final)
            print(f"{name}: {res.steps_run} steps (best {res.best_step}), {res.seconds:.0f} s -> {final}", flush=True)


if __name__ == "__main__":
    main()
