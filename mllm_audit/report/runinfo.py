"""What ran, in words a reader needs before any number: the run type, and for an edit the editor, mode,
edit count, editor state and objective. One place, so the console report and the HTML page (title and
header) name a run the same way, and two runs that differ only in editor or mode never look alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EDITOR_STATE_SCHEMA = "mllm-audit/editor-state/v1"  # a train-editor output's config.json
# run kind -> the command a user typed
KINDS = ("scan", "fix", "fix-unified", "gen-scan", "locate", "study", "train-editor")


def run_kind(results: dict[str, Any]) -> str:
    """The run type of a results.json (or an editor state's config.json): one of KINDS.

    `fix --editor sft|bpo` writes `command: fix` with stages instead of per-edit metrics."""
    if results.get("schema") == EDITOR_STATE_SCHEMA:
        return "train-editor"
    cmd = str(results.get("command") or "scan")
    if cmd == "fix" and "stages" in results:
        return "fix-unified"
    return cmd


def _state(results: dict[str, Any]) -> str:
    digest = (results.get("score_options") or {}).get("editor_state")
    if digest:
        return f"trained state {str(digest).removeprefix('sha256:')[:12]}"
    return "none (no trained state)"


def _objective(editor: dict[str, Any]) -> str:
    """The loss the edit optimised, as the run recorded it (an explicit objective, else the variant)."""
    if editor.get("objective"):
        return str(editor["objective"])
    opts = editor.get("options") or {}
    if editor.get("variant") or opts.get("variant"):
        return f"variant {editor.get('variant') or opts['variant']}"
    settings = editor.get("settings") or {}
    if editor.get("name") == "bpo":
        return f"balanced SFT then BPO (beta {settings.get('beta', '?')})"
    if editor.get("name") == "sft":
        return "balanced SFT (next image-token NLL)"
    return "the editor's default variant"


def what_ran(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) pairs naming the run, in reading order; empty values left out."""
    kind = run_kind(results)
    model = (results.get("model") or {}).get("name", "?")
    suite = (results.get("suite") or {}).get("name", "?")
    rows: list[tuple[str, str]] = [("run", kind), ("model", str(model)), ("suite", str(suite))]
    editor = results.get("editor") or {}
    if kind == "fix":
        mode = str(results.get("mode", "?"))
        if mode == "batch" and results.get("batch_edits"):
            mode += f" ({results['batch_edits']} edits at once)"
        rows += [("editor", f"{editor.get('name', '?')}" + (f" ({editor['scope']})" if editor.get("scope") else "")),
                 ("mode", mode), ("edits", str(results.get("n_edits", "?"))), ("state", _state(results)),
                 ("objective", _objective(editor))]
        settings = {k: v for k, v in (editor.get("options") or {}).items() if k != "variant"}
        if settings:
            rows.append(("settings", ", ".join(f"{k}={v}" for k, v in settings.items())))
        saved = results.get("saved_model")
        if saved:
            rows.append(("saved model", f"{saved.get('name') or ''} {saved.get('path', '')}".strip()))
    elif kind == "fix-unified":
        saved = results.get("saved")
        rows += [("editor", str(editor.get("name", "?"))), ("mode", "LoRA training on balanced data"),
                 ("edits", f"{results.get('n_rows', '?')} training rows, {len(results.get('train_prompts') or [])} "
                           f"prompts"),
                 ("state", "LoRA adapter saved" if saved else "not saved (no --save)"),
                 ("objective", _objective(editor))]
    elif kind == "train-editor":
        hp = results.get("hparams") or {}
        rows += [("editor", f"{results.get('editor', '?')} ({results.get('scope', '?')})"),
                 ("mode", "training"), ("steps", str(results.get("steps_run", "?"))),
                 ("state", "untrained (negative control)" if results.get("untrained") else "trained"),
                 ("objective", f"variant {hp['variant']}" if hp.get("variant") else f"loss {hp.get('loss', '?')}")]
    elif kind == "study":
        rows += [("study", str(results.get("study", "?"))), ("editors", ", ".join(results.get("editors") or [])),
                 ("edits", str(results.get("n_items", "?")))]
    elif kind == "locate":
        rows.append(("verdict", str(results.get("verdict", "?"))))
    return rows


def run_title(results: dict[str, Any]) -> str:
    """One line: `fix: ft-l (text), single, 4 edits on toy / toy`; the same in the console and the HTML title."""
    fields = dict(what_ran(results))
    kind = fields["run"]
    where = f"{fields['model']} / {fields['suite']}"
    if kind == "fix":
        return f"fix: {fields['editor']}, {fields['mode']}, {fields['edits']} edits on {where}"
    if kind == "fix-unified":
        return f"fix: {fields['editor']} (unified model, {fields['edits']}) on {where}"
    if kind == "train-editor":
        return f"train-editor: {fields['editor']}, {fields['steps']} steps on {where}"
    if kind == "study":
        return f"study {fields['study']}: {fields['editors']} on {where}"
    return f"{kind}: {where}"


def read_state_config(folder: Path) -> dict[str, Any]:
    """The config.json of a train-editor output (it has no results.json), checked to be an editor state:
    the console view and the HTML page read it here, so neither shows a folder the other refuses."""
    import json

    from mllm_audit.errors import AuditError

    path = Path(folder) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise AuditError(f"{path}: not a readable editor state ({type(e).__name__})") from None
    if not isinstance(cfg, dict) or cfg.get("schema") != EDITOR_STATE_SCHEMA:
        raise AuditError(f"{path}: not an editor state (schema {EDITOR_STATE_SCHEMA})")
    return cfg
