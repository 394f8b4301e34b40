"""Bridges to where evaluation already happens: lmms-eval (a model whose `loglikelihood` is this
tool's exact contract), lm-eval / lmms-eval task files for the tool's suites, an inspect_ai task and
scorer, and Hugging Face model cards.

Every harness is optional: a module here imports its harness only when used, and this package
imports nothing heavy. `lmms_eval_manifest` is the entry point lmms-eval reads (group
`lmms_eval.models`, declared in pyproject.toml): `lmms-eval --model mllm_audit --model_args pretrained=toy`.
"""

from __future__ import annotations

from typing import Any

LMMS_MODEL_ID = "mllm_audit"
LMMS_CLASS = "mllm_audit.integrations.lmms_model.MllmAuditLMM"


def lmms_eval_manifest() -> Any:
    """lmms-eval's model manifest for this tool's model (its documented entry-point payload)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=LMMS_MODEL_ID, simple_class_path=LMMS_CLASS)
