"""Checks that turn a surprise deep inside torch, safetensors or json into a line naming the culprit.

Each runs either before the expensive step (a safetensors header is read without loading a tensor)
or only once something already went wrong (which weight is NaN, which tensor has the wrong shape),
so a good input pays nothing for them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
_OTHER_DTYPES = ("F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64")  # sub-byte or rare: sizes not checked here


def safetensors_header(path: Path) -> dict[str, Any]:
    """The tensor table of a safetensors file, checked against the file: a truncated file, a header
    that is not JSON, or a tensor whose bytes lie outside the file is an error naming file and tensor."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n <= 0 or n > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise AuditError(f"weights file {path}: truncated or not safetensors (header {n}, file {size} bytes)")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise AuditError(f"weights file {path}: corrupt safetensors header ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise AuditError(f"weights file {path}: corrupt safetensors header (not a table of tensors)")
    data = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = (int(x) for x in info["data_offsets"])
            shape = [int(d) for d in info["shape"]]
            count = math.prod(shape)
            width = _DTYPE_BYTES.get(str(info["dtype"]))
        except (KeyError, TypeError, ValueError):
            raise AuditError(f"weights file {path}: tensor {name!r} has a corrupt header entry") from None
        if width is None and str(info["dtype"]) not in _OTHER_DTYPES:
            raise AuditError(f"weights file {path}: tensor {name!r} has unknown dtype {str(info['dtype'])[:20]!r}")
        if not 0 <= start <= end <= data:
            raise AuditError(f"weights file {path}: tensor {name!r} lies past the end of the file (truncated?)")
        if width is not None and (end - start) != count * width:
            raise AuditError(f"weights file {path}: tensor {name!r} holds {end - start} bytes, its shape needs "
                             f"{count * width}")
    return header


def check_safetensors_headers(folder: Path) -> None:
    """Every `*.safetensors` in `folder` is whole (see safetensors_header)."""
    for f in sorted(Path(folder).glob("*.safetensors")):
        safetensors_header(f)


def mismatched_tensor(model_cls: Any, folder: Path) -> str | None:
    """Which stored tensor's shape differs from what the model built from the folder's config
    expects (built on the meta device: no memory, no weights read). None if none is found."""
    import torch
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            build = model_cls.from_config if hasattr(model_cls, "from_config") else model_cls._from_config
            model = build(config)
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for f in sorted(Path(folder).glob("*.safetensors")):
        for name, info in safetensors_header(f).items():
            if name != "__metadata__" and name in expected and tuple(info["shape"]) != expected[name]:
                return (f"weights file {f}: tensor {name!r} has shape {tuple(info['shape'])}, "
                        f"the model's config needs {expected[name]}")
    return None


def first_nonfinite_weight(named: Iterable[tuple[str, Any]]) -> str | None:
    """The name of the first parameter holding NaN or inf (looked for only after a score was NaN)."""
    import torch

    for name, p in named:
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            return name
    return None


def check_finite_scores(model: Any, ids: list[str], values: list[float]) -> None:
    """A NaN or infinite log-probability is refused, naming the item and the first bad weight."""
    for item_id, v in zip(ids, values, strict=True):
        if not math.isfinite(v):
            bad = first_nonfinite_weight(model.named_parameters())
            cause = f"the weight {bad!r} holds NaN or inf values" if bad else "the model's outputs overflow"
            raise AuditError(f"item {item_id!r}: log-probability is {v}; {cause}")


def finite_number(where: str, field: str, value: Any) -> float:
    """A field of a stored record that must be a finite number (a hand-edited run is checked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise AuditError(f"{where}: field {field!r} must be a finite number, got {shown}")
    return float(value)


MAX_HPARAM_INT = 1 << 16  # ranks and widths: a state asking for more is damaged, not ambitious


def check_editor_config(path: Path, config: Any, defaults: dict[str, Any] | None = None) -> None:
    """The shape of an editor state's config.json (a corrupt or hand-edited one names its field).

    Hyperparameters the editor has defaults for must be there with the default's type, integers
    within 1..MAX_HPARAM_INT (a rank of 10**9 would otherwise be allocated)."""
    if not isinstance(config, dict):
        raise AuditError(f"editor state {path}: expected a JSON object")
    for key in ("hparams", "model"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise AuditError(f"editor state {path}: field {key!r} must be an object")
    if config.get("scope") is not None and config["scope"] not in ("text", "vision"):
        raise AuditError(f"editor state {path}: field 'scope' must be text or vision, got {config['scope']!r:.40}")
    hparams = config.get("hparams") or {}
    for key, value in hparams.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
            raise AuditError(f"editor state {path}: hparams[{key!r}] is not a finite number")
    for key, default in (defaults or {}).items():
        if key not in hparams:
            raise AuditError(f"editor state {path}: hparams lacks {key!r}")
        value = hparams[key]
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(value, bool) == isinstance(default, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and 1 <= value <= MAX_HPARAM_INT
        elif isinstance(default, float):
            ok = isinstance(value, (int, float))
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise AuditError(f"editor state {path}: hparams[{key!r}] = {repr(value)[:40]} is not a valid "
                             f"{type(default).__name__}" + (f" in 1..{MAX_HPARAM_INT}" if type(default) is int else ""))
