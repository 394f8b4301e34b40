"""`train-editor`: meta-train a learned editor (MEND, KE, SERAC) for one model on a suite's train split.

The editor trains on the `train` split, early-stops on the `val` split, and never sees `eval`
(that is what `fix` edits by default), so the figures `fix` reports are on held-out items.

`--output` is an output folder: training runs in `.NAME.partial` beside it (checkpoints, one writer
at a time) and the folder is renamed to NAME only when the state and its config are written. An
existing folder (a model, a suite, another state) is never written into. `--resume` continues the
partial folder when the model files, the suite's items and images and the editor settings are
those it was started with.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError
from mllm_audit.models.cards import DEFAULT_MODEL
from mllm_audit.runs.options import LEARNED_EDITORS, check_editor_name, check_load_options

if TYPE_CHECKING:
    from mllm_audit.editors.learned.training import TrainResult
    from mllm_audit.models.base import Adapter



def train_editor(
    editor: str = "mend",
    model: str = DEFAULT_MODEL,
    suite: str = "toy",
    output: Path = Path("editor-state"),
    scope: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    data_dir: Path | None = None,
    dtype: str = "fp32",
    device: str = "cpu",
    allow_outside_paths: bool = False,
    counterfactual: str | None = None,
    variant: str | None = None,
    lr: float | None = None,
    objective: str | None = None,
    hparam: Sequence[str] = (),
    hparams_file: Path | None = None,
    revision: str | None = None,
    trust_generic: bool = False,
    *,
    batch: int | None = None,
    val_every: int | None = None,
    patience: int | None = None,
    ckpt_every: int | None = None,
    hparams: dict[str, Any] | None = None,
    threads: int | None = 1,
    adapter: Adapter | None = None,
    on_step: Callable[[int, int, float, float | None], None] | None = None,
) -> TrainResult:
    """Train and save `output/state.safetensors` + `output/config.json`; resume from the partial folder's checkpoint.

    `counterfactual` and `variant` are two training settings with their own options; `hparam` (`--set
    KEY=VALUE`) and `hparams_file` (`--hparams`, an EasyEdit hparams YAML) any declared one
    (editors/hparams.TRAIN_SETTINGS: schedule keys feed the schedule, the rest the network); `hparams`
    a library caller's dict."""
    from mllm_audit.editors.hparams import resolve_settings
    from mllm_audit.runs.signals import stop_signals

    editor = editor.lower()
    check_editor_name(editor, LEARNED_EDITORS, "--editor (a learned editor)")
    settings, _ = resolve_settings(editor, hparam, hparams_file, train=True)  # --set over the file, both checked
    schedule = {k: settings.pop(k) for k in ("steps", "batch", "lr", "val_every", "patience", "ckpt_every", "clip")
                if k in settings}
    steps = steps if steps is not None else schedule.get("steps")
    lr = lr if lr is not None else schedule.get("lr")
    batch, val_every = schedule.get("batch", batch), schedule.get("val_every", val_every)
    patience, ckpt_every = schedule.get("patience", patience), schedule.get("ckpt_every", ckpt_every)
    if settings:
        hparams = {**settings, **(hparams or {})}
    if objective is not None:  # mend, ke: the edit objective the network learns (editors/objectives.py)
        from mllm_audit.editors.objectives import check_objective

        check_objective(objective, editor)
        hparams = {**(hparams or {}), "objective": objective}
    if counterfactual or variant:
        hparams = {**(hparams or {}), **({"counterfactual": counterfactual} if counterfactual else {}),
                   **({"variant": variant} if variant else {})}

    with stop_signals():
        return _train_editor(editor, model, suite, Path(output), scope, steps, seed, resume, batch, lr, val_every,
                             patience, ckpt_every, hparams, data_dir, dtype, device, threads, adapter, on_step,
                             allow_outside_paths, schedule.get("clip"), revision, trust_generic)


def _train_editor(
    editor: str, model: str, suite: str, out: Path, scope: str | None, steps: int | None, seed: int, resume: bool,
    batch: int | None, lr: float | None, val_every: int | None, patience: int | None, ckpt_every: int | None,
    hparams: dict[str, Any] | None, data_dir: Path | None, dtype: str, device: str, threads: int | None,
    adapter: Adapter | None, on_step: Callable[[int, int, float, float | None], None] | None,
    allow_outside_paths: bool = False, clip: float | None = None,
    revision: str | None = None, trust_generic: bool = False,
) -> TrainResult:
    import torch

    from mllm_audit.editors import make_editor
    from mllm_audit.editors.learned.base import LearnedEditor
    from mllm_audit.editors.learned.training import CHECKPOINT_FILE, TRAIN_DEFAULTS, Diverged, train_loop
    from mllm_audit.runs.record import model_identity, suite_identity, to_plain
    from mllm_audit.runs.score import check_images, image_loader
    from mllm_audit.runs.signals import STOPS, interrupted
    from mllm_audit.suites.items import load_suite
    from mllm_audit.util.folders import OutputFolder, check_new_output
    from mllm_audit.util.numbers import check_counts

    check_counts({"--steps": steps, "batch": batch, "val_every": val_every, "patience": patience,
                  "ckpt_every": ckpt_every}, seed)
    check_load_options(dtype, device)
    if lr is not None and not (isinstance(lr, (int, float)) and 0 < lr < float("inf")):
        raise AuditError(f"lr must be a positive finite number, got {lr!r}")
    check_editor_name(editor, LEARNED_EDITORS, "--editor (a learned editor)")
    if scope not in (None, "text", "vision"):
        raise AuditError(f"--scope must be text or vision, got {scope!r}")
    if scope == "vision" and editor == "serac":
        raise AuditError("--scope vision applies to weight editors (mend, ke); serac edits no weights")
    the_suite = load_suite(suite, data_dir=data_dir, allow_outside_paths=allow_outside_paths)
    train_items = the_suite.select(split="train")
    val_items = the_suite.select(split="val")
    if not train_items:
        raise AuditError(f"suite {the_suite.name!r} has no items in split 'train' to train an editor on")
    check_images(the_suite, train_items + val_items)
    folder = OutputFolder(out, "--output", "train-editor", stable=True)
    partial = folder.tmp / CHECKPOINT_FILE
    check_new_output(out, "--output")  # a model, a suite, a finished state: never written into
    if not resume and partial.is_file():
        raise AuditError(f"{out} already holds an editor training run ({folder.tmp}): pass --resume to continue it "
                         "or choose another --output")
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # for this run only: restored below
    torch.manual_seed(seed)
    if adapter is None:
        from mllm_audit.models import load_model
        from mllm_audit.models.base import LoadOptions

        adapter = load_model(model, LoadOptions(dtype=dtype, device=device,
                                                revision=revision, trust_generic=trust_generic))
    ed = make_editor(editor)
    assert isinstance(ed, LearnedEditor)
    ed.scope = scope or "text"
    ed.setup(adapter, hparams)
    given = {"steps": steps, "batch": batch, "lr": lr, "val_every": val_every, "patience": patience,
             "ckpt_every": ckpt_every, "clip": clip}
    settings = {**TRAIN_DEFAULTS, **ed.train_defaults, **{k: v for k, v in given.items() if v is not None}}
    if int(settings["steps"]) < 1:
        raise AuditError(f"--steps must be at least 1, got {settings['steps']}")
    suite_ident = suite_identity(the_suite, train_items + val_items)
    identity: dict[str, Any] = {"model": adapter.identity(), "suite": to_plain(suite_ident), "dtype": dtype}
    extra = {"suite": to_plain(suite_ident), "n_train": len(train_items), "n_val": len(val_items)}
    model_identity(identity["model"])  # type-checked like every run record's
    tmp = folder.open()
    try:
        res = train_loop(ed, adapter, train_items, val_items, image_loader(the_suite), tmp, seed, resume,
                         settings, extra, on_step, identity=identity)
        (tmp / CHECKPOINT_FILE).unlink(missing_ok=True)  # the finished folder is the state and its config
        folder.commit()
        res.out = out
        return res
    except Diverged:
        folder.lock.release()
        shutil.rmtree(folder.tmp, ignore_errors=True)  # its checkpoints lead to the same divergence
        raise
    except STOPS as e:
        raise interrupted(e, f"the last checkpoint is kept in {folder.tmp}; continue with --resume --output {out}") \
            from None
    finally:
        folder.lock.release()
        torch.set_num_threads(saved_threads)

