"""Editor settings as users keep them: `--set KEY=VALUE` checked against each editor's declared settings,
and `--hparams FILE` reading an EasyEdit hparams YAML (FT, IKE, MEND, SERAC, KE).

Torch-free on purpose: options are judged before any model loads. Each editor declares the settings `fix`
passes it (SETTINGS; tests/editors/test_hparams.py holds each declaration to the editor's own defaults);
learned editors (mend, ke, serac) take their network's hyperparameters at `train-editor` time
(TRAIN_SETTINGS). An EasyEdit field is either mapped to one of those settings, accounted for by name (the
model card or a CLI option supplies it, or this implementation has it fixed at the value shown), or the
file is refused naming the field: nothing in a file is silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError

# value types: "int", "float", "bool", "str", "float?" (a number or none), or a tuple of allowed strings
_FT = {"variant": ("easyedit", "margin"), "steps": "int", "lr": "float", "stop_loss": "float?",
       "stop_margin": "float?", "norm_constraint": "float?", "weight_decay": "float",
       "text_scope": ("last_layer", "card")}
SETTINGS: dict[str, dict[str, Any]] = {
    "ft-l": _FT,
    "ft-v": _FT,
    "ike": {"variant": ("easyedit", "prompt"), "k": "int", "retrieve": ("fact", "prompt"), "fit_context": "bool",
            "reserve": "int"},
    "control-shift": {"steps": "int", "lr": "float", "stop_margin": "float"},
    "serac": {"routing": ("soft", "hard")},
    "mend": {},  # a trained network: its hyperparameters are the state's (train-editor --set / --hparams)
    "ke": {},
}
_SCHEDULE = {"steps": "int", "batch": "int", "lr": "float", "val_every": "int", "patience": "int",
             "ckpt_every": "int", "clip": "float"}
TRAIN_SETTINGS: dict[str, dict[str, Any]] = {
    "mend": {**_SCHEDULE, "variant": ("easyedit", "margin"), "rank": "int", "target_margin": "float",
             "c_loc": "float", "c_edit": "float", "init_lr": "float", "norm": ("feature", "rms"),
             "text_layers": "int", "vision_layers": "int", "loss": ("nll", "margin")},
    "ke": {**_SCHEDULE, "variant": ("decao", "margin"), "d_cond": "int", "init_scale": "float",
           "target_margin": "float", "c_edit": "float", "c_loc": "float", "margin_max": "float",
           "margin_min": "float", "anneal_steps": "int", "loss": ("nll", "margin"), "conditioner": ("bilstm", "bag"),
           "constraint": ("lagrangian", "penalty")},
    "serac": {**_SCHEDULE, "routing": ("soft", "hard"), "d_scope": "int", "rank": "int", "threshold": "float",
              "target_margin": "float", "c_scope": "float", "c_cf": "float", "counterfactual": "str",
              "cf_context": "bool"},
}


def _convert(editor: str, key: str, kind: Any, value: Any, where: str) -> Any:
    text = str(value).strip()
    try:
        if isinstance(kind, tuple):
            if text not in kind:
                raise ValueError
            return text
        if kind == "float?" and text.lower() in ("none", "null", "false"):
            return None
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(text)) if isinstance(value, float) else int(text)
        if kind in ("float", "float?"):
            return float(text)
        return text
    except ValueError:
        want = " or ".join(kind) if isinstance(kind, tuple) else {"float?": "a number or none"}.get(kind, f"an {kind}"
                                                                                                    if kind == "int"
                                                                                                    else f"a {kind}")
        raise AuditError(f"{where}: {editor} setting {key} must be {want}, got {value!r}") from None


def parse_settings(editor: str, pairs: Sequence[str], declared: dict[str, dict[str, Any]] | None = None,
                   flag: str = "--set") -> dict[str, Any]:
    """KEY=VALUE strings -> typed settings of `editor`; an unknown key is refused listing the valid ones."""
    table = SETTINGS if declared is None else declared
    valid = table.get(editor.lower(), {})
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise AuditError(f"{flag} {pair!r}: expected KEY=VALUE")
        if key not in valid:
            listed = ", ".join(sorted(valid)) if valid else "none at this step"
            raise AuditError(f"{flag} {key}: not a setting of {editor} (valid: {listed})")
        out[key] = _convert(editor, key, valid[key], value, f"{flag} {pair!r}")
    return out


# ------------------------------------------------------------------------------ EasyEdit hparams YAML
# Fields the model card or a CLI option supplies (the same for every algorithm): named, never applied here.
_FROM_CARD = {"name", "model_name", "model_class", "tokenizer_class", "tokenizer_name", "small_name", "cls_name",
              "cls_class", "qformer_checkpoint", "qformer_name_or_path", "state_dict_file", "rewrite_module_tmp",
              "layer_module_tmp", "mlp_module_tmp", "attn_module_tmp", "ln_f_module", "lm_head_module",
              "layers", "inner_params", "model_parallel", "fp16", "half", "max_length"}
_FROM_CLI = {"device": "--device", "results_dir": "--output", "archive": "--editor-state", "coco_image": "--data-dir",
             "rephrase_image": "--data-dir", "task_name": "--suite", "seed": "--seed"}
# Bookkeeping of EasyEdit's own trainer (logging, saving, evaluation): no effect on what is learned.
_TRAINER_LOG = {"silent", "verbose", "debug", "save", "model_save_pt", "log_interval", "eval_log_interval",
                "final_eval", "eval_only", "val_steps", "val_batch_size", "early_stop_key", "log_errors", "alg"}

Field = tuple[str, Callable[[Any], Any]] | None  # (our setting, conversion) or None: fixed here

# EasyEdit algorithm -> (our editors, field -> mapping); a fixed field lists the only value it may take.
_SAME: Callable[[Any], Any] = lambda v: v  # noqa: E731 - a named identity for the tables below
EASYEDIT: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "FT": (("ft-l", "ft-v"), {
        "num_steps": ("steps", int), "lr": ("lr", float), "weight_decay": ("weight_decay", float),
        "norm_constraint": ("norm_constraint", lambda v: None if v is False or v is None else float(v)),
        "kl_factor": {"fixed": 0}, "batch_size": {"fixed": 1}, "objective_optimization": {"fixed": "target_new"},
    }),
    "IKE": (("ike",), {"k": ("k", int), "sentence_model_name": {"note": "retrieval embeds with the edited model "
                                                                        "itself (docs/editors.md)"}}),
    "MEND": (("mend",), {
        "edit_lr": ("init_lr", float), "lr": ("lr", float), "cedit": ("c_edit", float), "cloc": ("c_loc", float),
        "rank": ("rank", int), "max_iters": ("steps", int), "batch_size": ("batch", int),
        "val_interval": ("val_every", int), "grad_clip": ("clip", float),
        "norm": ("norm", lambda v: "feature" if v is True else _refuse("norm", v)),
        "lr_lr": {"fixed": 1e-4}, "lr_scale": {"fixed": 1.0}, "iedit": {"fixed": 0.1}, "cbase": {"fixed": 1.0},
        "dropout": {"fixed": 0.0}, "train_base": {"fixed": False}, "no_grad_layers": {"fixed": None},
        "one_sided": {"fixed": False}, "n_hidden": {"fixed": 1}, "hidden_dim": {"fixed": None},
        "init": {"fixed": "id"}, "combine": {"fixed": True}, "x_only": {"fixed": False},
        "delta_only": {"fixed": False}, "act": {"fixed": "relu"}, "mlp_class": {"fixed": "IDMLP"},
        "shared": {"fixed": True}, "opt": {"fixed": "Adam"}, "accumulate_bs": {"note": "one optimiser step per "
                                                                                      "batch here"},
        "early_stop_patience": {"note": "--patience counts validations here, not iterations"},
        "exact_match": {"note": "reliability is the margin's sign here"},
    }),
    "KE": (("ke",), {
        "lr": ("lr", float), "cloc": ("c_loc", float), "max_iters": ("steps", int), "batch_size": ("batch", int),
        "val_interval": ("val_every", int), "grad_clip": ("clip", float),
        "edit_lr": {"note": "KE's conditioner predicts the update itself"}, "lr_lr": {"fixed": 1e-3},
        "lr_scale": {"fixed": 1.0}, "cedit": ("c_edit", float), "cbase": {"fixed": 1.0}, "dropout": {"fixed": 0.0},
        "train_base": {"fixed": False}, "no_grad_layers": {"fixed": None}, "opt": {"fixed": "Adam"},
        "accumulate_bs": {"note": "one optimiser step per batch here"},
        "early_stop_patience": {"note": "--patience counts validations here, not iterations"},
    }),
    "SERAC_MULTI": (("serac",), {
        "lr": ("lr", float), "max_iters": ("steps", int), "batch_size": ("batch", int),
        "val_interval": ("val_every", int), "grad_clip": ("clip", float),
        "supervised": ("routing", lambda v: "hard" if v else "soft"),  # serac.py: soft is `supervised: False`
        "soft_weighting": {"fixed": False},
        "edit_lr": {"note": "SERAC's counterfactual model is trained with lr"}, "lr_lr": {"fixed": 0.0},
        "cedit": {"fixed": 0.1}, "iedit": {"fixed": 0.1}, "cloc": {"fixed": 1.0}, "cbase": {"fixed": 1.0},
        "dropout": {"fixed": 0.0}, "train_base": {"fixed": False},
        "no_grad_layers": {"fixed": None}, "checkpoint_grad": {"fixed": False}, "cross_attend": {"fixed": False},
        "cos": {"fixed": False}, "freeze": {"fixed": None}, "square": {"fixed": True},
        "bound_embeds": {"fixed": False}, "use_all_negatives": {"fixed": False}, "freeze_cntr": {"fixed": False},
        "dist_heads": {"fixed": 1}, "lora": {"fixed": None}, "edit_bs": {"fixed": 1}, "opt": {"fixed": "Adam"},
        "accumulate_bs": {"note": "one optimiser step per batch here"}, "unlikelihood": {"fixed": True},
        "early_stop_patience": {"note": "--patience counts validations here, not iterations"},
        "exact_match": {"note": "reliability is the margin's sign here"},
    }),
}
EASYEDIT["SERAC"] = EASYEDIT["SERAC_MULTI"]


def _same(value: Any, fixed: Any) -> bool:
    """YAML 1.1 reads `1e-4` as text: a number written either way is the same number."""
    if isinstance(fixed, float) and not isinstance(value, bool):
        try:
            return float(value) == fixed
        except (TypeError, ValueError):
            return False
    return value == fixed and type(value) is type(fixed) or (value is None and fixed is None)


def _refuse(field: str, value: Any) -> Any:
    raise AuditError(f"EasyEdit field {field}: {value!r} has no counterpart here")


def read_easyedit_hparams(path: Path, editor: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, accounted) from an EasyEdit hparams YAML for `editor`: the settings it maps to, and every
    other field with why it is not applied (card, CLI option, trainer bookkeeping, a note). A field with
    no counterpart, or a fixed field at another value, is refused by name."""
    from mllm_audit.util.files import read_yaml_mapping

    path = Path(path)
    data = read_yaml_mapping(path, "EasyEdit hparams file")
    alg = str(data.get("alg_name") or "")
    if alg not in EASYEDIT:
        raise AuditError(f"{path}: alg_name {alg or '(missing)'!r} is not one this tool maps "
                         f"(known: {', '.join(sorted(EASYEDIT))})")
    editors, table = EASYEDIT[alg]
    if editor.lower() not in editors:
        raise AuditError(f"{path}: an EasyEdit {alg} file, not for --editor {editor} (it is for {', '.join(editors)})")
    settings: dict[str, Any] = {}
    accounted: dict[str, str] = {"alg_name": alg}
    for field, value in data.items():
        if field == "alg_name":
            continue
        rule = table.get(field)
        if isinstance(rule, tuple):
            key, conv = rule
            try:
                settings[key] = conv(value)
            except (TypeError, ValueError):
                raise AuditError(f"{path}: EasyEdit field {field}: {value!r} is not usable as {key}") from None
        elif isinstance(rule, dict) and "fixed" in rule:
            if not _same(value, rule["fixed"]):
                raise AuditError(f"{path}: EasyEdit field {field}: {value!r} is not supported (this implementation "
                                 f"has it fixed at {rule['fixed']!r})")
            accounted[field] = f"fixed at {rule['fixed']!r} here"
        elif isinstance(rule, dict):
            accounted[field] = str(rule["note"])
        elif field in _FROM_CARD:
            accounted[field] = "from the model card"
        elif field in _FROM_CLI:
            accounted[field] = f"a CLI option: {_FROM_CLI[field]}"
        elif field in _TRAINER_LOG:
            accounted[field] = "EasyEdit trainer bookkeeping (logging, saving)"
        else:
            raise AuditError(f"{path}: EasyEdit field {field!r} has no counterpart for {editor} (mapped: "
                             f"{', '.join(k for k, r in table.items() if isinstance(r, tuple))})")
    return settings, accounted


def resolve_settings(editor: str, pairs: Sequence[str], hparams_file: Path | None, train: bool = False
                     ) -> tuple[dict[str, Any], dict[str, str]]:
    """A file's settings under the command line's `--set` (which wins), checked against the declarations."""
    declared = TRAIN_SETTINGS if train else SETTINGS
    from_file: dict[str, Any] = {}
    accounted: dict[str, str] = {}
    if hparams_file is not None:
        from_file, accounted = read_easyedit_hparams(hparams_file, editor)
        valid = declared.get(editor.lower(), {})
        step = "train-editor" if train else "fix"
        for key in from_file:
            if key not in valid:
                other = "fix" if train else "train-editor"
                raise AuditError(f"--hparams {hparams_file}: {editor} takes {key} at {other} time, not at {step} "
                                 f"(pass the file to `{other} --hparams`)")
        from_file = {k: _convert(editor, k, valid[k], v, f"--hparams {hparams_file}") for k, v in from_file.items()}
    return {**from_file, **parse_settings(editor, pairs, declared)}, accounted
