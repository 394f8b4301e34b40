"""`train-editor`: meta-train a learned editor (MEND, KE, SERAC) for one model on a suite's train split.

The editor trains on the `train` split, early-stops on the `val` split, and never sees `eval`
(that is what `fix` edits by default), so the figures `fix` reports are on held-out items.

`--out` is an output folder: training runs in `.NAME.partial` beside it (checkpoints, one writer
at a time) and the folder is renamed to NAME only when the state and its config are written. An
existing folder (a model, a suite, another state) is never written into. `--resume` continues the
partial folder when the model files, the suite's items and images and the editor settings are
those it was started with.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AuditError

if TYPE_CHECKING:
    from .editors.learned import TrainResult
    from .models.base import Adapter

LEARNED = ("mend", "ke", "serac")


def train_editor(
    editor: str = "mend",
    model: str = "toy",
    suite: str = "toy",
    out: Path = Path("editor-state"),
    scope: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    batch: int | None = None,
    lr: float | None = None,
    val_every: int | None = None,
    patience: int | None = None,
    ckpt_every: int | None = None,
    hparams: dict[str, Any] | None = None,
    data_dir: Path | None = None,
    dtype: str = "fp32",
    device: str = "cpu",
    threads: int | None = 1,
    adapter: Adapter | None = None,
    on_step: Callable[[int, int, float, float | None], None] | None = None,
    allow_outside_paths: bool = False,
) -> TrainResult:
    """Train and save `out/state.safetensors` + `out/config.json`; resume from the partial folder's checkpoint."""
    from .runs.signals import stop_signals

    with stop_signals():
        return _train_editor(editor, model, suite, Path(out), scope, steps, seed, resume, batch, lr, val_every,
                             patience, ckpt_every, hparams, data_dir, dtype, device, threads, adapter, on_step,
                             allow_outside_paths)


def _train_editor(
    editor: str, model: str, suite: str, out: Path, scope: str | None, steps: int | None, seed: int, resume: bool,
    batch: int | None, lr: float | None, val_every: int | None, patience: int | None, ckpt_every: int | None,
    hparams: dict[str, Any] | None, data_dir: Path | None, dtype: str, device: str, threads: int | None,
    adapter: Adapter | None, on_step: Callable[[int, int, float, float | None], None] | None,
    allow_outside_paths: bool = False,
) -> TrainResult:
    import torch

    from .editors import make_editor
    from .editors.learned import CHECKPOINT_FILE, TRAIN_DEFAULTS, Diverged, LearnedEditor, train_loop
    from .numbers import check_counts
    from .runs.folders import OutputFolder, check_new_output
    from .runs.record import model_identity, suite_identity, to_plain
    from .runs.signals import STOPS, interrupted
    from .scan import check_images, image_loader
    from .suites import load_suite

    check_counts({"--steps": steps, "batch": batch, "val_every": val_every, "patience": patience,
                  "ckpt_every": ckpt_every}, seed)
    if lr is not None and not (isinstance(lr, (int, float)) and 0 < lr < float("inf")):
        raise AuditError(f"lr must be a positive finite number, got {lr!r}")
    if editor not in LEARNED:
        raise AuditError(f"--editor must be one of {', '.join(LEARNED)} (learned editors), got {editor!r}")
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
    folder = OutputFolder(out, "--out", "train-editor", stable=True)
    partial = folder.tmp / CHECKPOINT_FILE
    check_new_output(out, "--out")  # a model, a suite, a finished state: never written into
    if not resume and partial.is_file():
        raise AuditError(f"{out} already holds an editor training run ({folder.tmp}): pass --resume to continue it "
                         "or choose another --out")
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # for this run only: restored below
    torch.manual_seed(seed)
    if adapter is None:
        from .models import load_model
        from .models.base import LoadOptions

        adapter = load_model(model, LoadOptions(dtype=dtype, device=device))
    ed = make_editor(editor)
    assert isinstance(ed, LearnedEditor)
    ed.scope = scope or "text"
    ed.setup(adapter, hparams)
    given = {"steps": steps, "batch": batch, "lr": lr, "val_every": val_every, "patience": patience,
             "ckpt_every": ckpt_every}
    settings = {**TRAIN_DEFAULTS, **ed.train_defaults, **{k: v for k, v in given.items() if v is not None}}
    if int(settings["steps"]) < 1:
        raise AuditError(f"--steps must be at least 1, got {settings['steps']}")
    suite_ident = suite_identity(the_suite, train_items + val_items)
    identity = {"model": adapter.identity(), "suite": to_plain(suite_ident), "dtype": dtype}
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
        raise interrupted(e, f"the last checkpoint is kept in {folder.tmp}; continue with --resume --out {out}") \
            from None
    finally:
        folder.lock.release()
        torch.set_num_threads(saved_threads)

