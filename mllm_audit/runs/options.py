"""The option checks every run shares, done before any suite or model loads: a typo costs
milliseconds, not a model load. scan, fix, gen-scan, locate, train-editor and study call
`check_load_options`; numeric counts go through util.numbers."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mllm_audit.errors import AuditError
from mllm_audit.suites.items import SPLITS
from mllm_audit.util.files import check_safetensors_files

DTYPE_NAMES = ("fp32", "bf16", "fp16")


QUANTIZE_NAMES = ("8bit", "4bit")


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)$", re.IGNORECASE)


def parse_max_memory(spec: str | Mapping[Any, Any] | None) -> dict[int | str, str] | None:
    """`0=20GiB,cpu=64GiB` -> {0: "20GiB", "cpu": "64GiB"} (GPU keys as ints, as accelerate wants)."""
    if spec is None:
        return None
    pairs = list(spec.items()) if isinstance(spec, Mapping) else [
        tuple(part.split("=", 1)) if "=" in part else (part, "") for part in str(spec).split(",")
    ]
    out: dict[int | str, str] = {}
    for key, value in pairs:
        k, v = str(key).strip().lower(), str(value).strip()
        if k.startswith("cuda:"):
            k = k[5:]
        if not _SIZE.match(v):
            raise AuditError(f"--max-memory: {key}={value!r} is not a size like 20GiB (format: 0=20GiB,cpu=64GiB)")
        if k.isdigit():
            out[int(k)] = v
        elif k in ("cpu", "mps"):
            out[k] = v
        else:
            raise AuditError(f"--max-memory: unknown device {key!r} (use GPU numbers, cpu or mps: 0=20GiB,cpu=64GiB)")
    if not out:
        raise AuditError("--max-memory is empty (format: 0=20GiB,cpu=64GiB)")
    return out


def check_scan_options(
    batch_size: int, limit: int | None, dtype: str, device: str, quantize: str | None, split: str | None,
    device_map: str | None, max_memory: Any, n_processes: int,
) -> None:
    """Cheap checks first: a typo costs milliseconds, not a model load."""
    from mllm_audit.util.numbers import check_counts

    check_counts({"--batch-size": batch_size, "--limit": limit})
    check_load_options(dtype, device, quantize, split)
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise AuditError(f"--device-map must be one of {', '.join(DEVICE_MAPS)}, got {device_map!r}")
    if max_memory is not None and device_map is None:
        raise AuditError("--max-memory is a budget for --device-map; add --device-map auto")
    if device_map is not None and n_processes > 1:
        raise AuditError("--device-map spreads one model over devices; it cannot be combined with several processes")


def check_device_available(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise AuditError(f"--device {device}: no CUDA device is available here")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise AuditError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise AuditError("--device mps: MPS is not available here")


def check_weights(model: str, trust_generic: bool = False) -> None:
    """Look at local weight files before any loader touches them."""
    from mllm_audit.models.cards import resolve_card

    weights = Path(resolve_card(model, trust_generic=trust_generic).weights)
    if weights.is_dir():
        check_safetensors_files(weights)


def check_load_options(dtype: str = "fp32", device: str = "cpu", quantize: str | None = None,
                       split: str | None = None) -> None:
    """dtype, device, quantization and split names, as every command that loads a model spells them."""
    if dtype not in DTYPE_NAMES:
        raise AuditError(f"--dtype must be one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    if quantize is not None and quantize not in QUANTIZE_NAMES:
        raise AuditError(f"--quantize must be 8bit or 4bit, got {quantize!r}")
    if split is not None and split not in SPLITS:
        raise AuditError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not re.fullmatch(r"(cpu|mps|cuda(:\d+)?)", device):
        raise AuditError(f"--device must be cpu, mps, cuda or cuda:N, got {device!r}")


FIX_MODES = ("single", "batch", "sequential")
FIX_BATCH_SIZES = (1, 4, 16, 64)
UNIFIED_EDITORS = ("sft", "bpo")
LEARNED_EDITORS = ("mend", "ke", "serac")


def check_editor_name(editor: str, allowed: tuple[str, ...] | None = None, what: str = "--editor") -> None:
    """The editor registry's names (no editor module is imported: a typo costs milliseconds)."""
    from mllm_audit.editors import REGISTRY

    known = allowed if allowed is not None else (*REGISTRY.names(), *UNIFIED_EDITORS)  # plugins included
    if editor not in known:
        raise AuditError(f"unknown editor {editor!r} (known: {', '.join(known)})" if allowed is None
                         else f"{what} must be one of {', '.join(known)}, got {editor!r}")


def check_fix_options(editor: str, mode: str = "single", batch_edits: int = 16, scope: str | None = None,
                      variant: str | None = None, serac_routing: str | None = None,
                      hparam: Sequence[str] = (), dtype: str = "fp32", device: str = "cpu",
                      split: str | None = None, balanced_from: str = "images") -> None:
    """Every `fix` option that can be judged without loading anything."""
    check_editor_name(editor)
    check_load_options(dtype, device, split=split)
    if mode not in FIX_MODES:
        raise AuditError(f"--mode must be one of {', '.join(FIX_MODES)}, got {mode!r}")
    if mode == "batch" and batch_edits not in FIX_BATCH_SIZES:
        raise AuditError(f"--batch-edits must be one of {FIX_BATCH_SIZES}, got {batch_edits}")
    if scope not in (None, "text", "vision"):
        raise AuditError(f"--scope must be text or vision, got {scope!r}")
    if editor not in UNIFIED_EDITORS:  # every other editor's settings: declared in editors/hparams.py
        from mllm_audit.editors.hparams import parse_settings

        parse_settings(editor, hparam)
    if variant is not None and editor not in ("ft-l", "ft-v", "ike"):
        raise AuditError(f"--variant applies to ft-l, ft-v and ike; {editor} takes it at train-editor time")
    if balanced_from not in ("images", "generations"):
        raise AuditError(f"--balanced-from must be images or generations, got {balanced_from!r}")
    if balanced_from != "images" and editor not in UNIFIED_EDITORS:
        raise AuditError(f"--balanced-from applies to --editor sft and bpo, not {editor}")
    if serac_routing is not None and editor != "serac":
        raise AuditError(f"--serac-routing applies to --editor serac, not {editor}")
