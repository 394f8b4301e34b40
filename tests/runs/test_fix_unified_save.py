"""A unified `fix --save` killed between its stages' writes leaves no half --save folder: the stages are
built in a temporary sibling and renamed into place with the manifest (util/folders.OutputFolder, as the
other --save writers do), and the next run into the same --save removes that sibling and writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mllm_audit.editors.bpo import BalancedSettings

SMALL = {"images_per_prompt": 4, "adherence_images": 2, "batch_size": 8}


KILLED_AFTER_THE_SFT_SAVE = """
import os, signal, sys
from pathlib import Path
import mllm_audit.editors.bpo as bpo
from mllm_audit.editors.bpo import BalancedSettings
from mllm_audit.runs.fix_unified import run_unified_fix
save, out = Path(sys.argv[1]), Path(sys.argv[2])
def killed(*args, **kwargs):
    assert any(save.parent.glob(f".{save.name}.tmp-*/sft/config.json")) or (save / "sft").is_dir()
    os.kill(os.getpid(), signal.SIGKILL)
bpo.train_bpo = killed
run_unified_fix(model="toy-janus-v2", editor="bpo", save=save, output=out,
                settings=BalancedSettings(sft_epochs=1), images_per_prompt=4, adherence_images=2, batch_size=8)
"""


def test_killed_save_is_not_left_half_and_the_next_run_writes(tmp_path: Path) -> None:
    """The first run is a fresh interpreter killed (SIGKILL: no cleanup runs) once the sft stage is saved:
    a fork of this process would inherit torch's thread pool, which a forked child may not use."""
    from mllm_audit.runs.fix_unified import run_unified_fix
    from mllm_audit.util.outputs import read_manifest

    save = tmp_path / "saved"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run([sys.executable, "-c", KILLED_AFTER_THE_SFT_SAVE, str(save), str(tmp_path / "run1")],
                           env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]  # killed where the test put the kill
    left = list(tmp_path.glob(".saved.tmp-*"))
    left_whole = len(left) == 1 and (left[0] / "sft" / "config.json").is_file()
    # Before, `saved/` held `sft/` and no manifest, and this run was refused ("holds files mllm-audit did not write").
    res = run_unified_fix(model="toy-janus-v2", editor="sft", save=save, output=tmp_path / "run2",
                          settings=BalancedSettings(sft_epochs=1), **SMALL)  # type: ignore[arg-type]
    assert res.results["complete"] is True and (save / "sft" / "config.json").is_file()
    assert read_manifest(save)["kind"] == "unified-fix models"  # type: ignore[index]
    assert left_whole  # the kill came after the sft stage was written, into the temporary sibling
    assert not list(tmp_path.glob(".saved.*"))  # the killed run's temporary folder was removed
