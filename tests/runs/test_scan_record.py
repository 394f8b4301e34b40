"""scan through the run record: identity covers every byte of the model and the images, coverage is
honest about --limit, one writer per folder, and the gate refuses a run that is not the policy's suite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.gate.evaluate import gate
from mllm_audit.models.base import weights_fingerprint
from mllm_audit.runs.scan import run_scan
from mllm_audit.util.folders import RunLock
from mllm_audit.util.identity import HashCache


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BLIP-2 whose weights file is over 2 MiB (the old fingerprint read only its first and last MiB)."""
    from mllm_audit.testing.tiny import save_tiny_blip2

    out = save_tiny_blip2(tmp_path_factory.mktemp("big") / "m", seed=0, text_ffn=2048)
    assert (out / "model.safetensors").stat().st_size > 2 << 20
    return out


def test_fingerprint_covers_the_middle_of_a_weight_file(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * (3 * 4096))  # 3 MiB
    before = weights_fingerprint(str(folder))
    _flip_middle_byte(folder / "model.safetensors")
    assert weights_fingerprint(str(folder)) != before
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * (3 * 4096))  # negative control: same bytes back
    assert weights_fingerprint(str(folder)) == before


def test_sidecar_cache_hashes_once_and_notices_a_change(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 1000)
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256(f)
    cache.save()
    again = HashCache(tmp_path / "cache.json")
    assert again.sha256(f) == first and (again.hits, again.misses) == (1, 0)
    f.write_bytes(b"y" * 1000)  # same size; the mtime moves
    import os

    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert again.sha256(f) != first and again.misses == 1


def test_resume_refuses_a_model_changed_in_the_middle(big_model: Path, tiny_suite: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(big_model, model)
    out = tmp_path / "run"
    run_scan(model=str(model), suite=str(tiny_suite), output=out, limit=4)
    _flip_middle_byte(model / "model.safetensors")
    with pytest.raises(AuditError, match=r"cannot resume .*model\.(revision|files\.model\.safetensors) differs"):
        run_scan(model=str(model), suite=str(tiny_suite), output=out, limit=4, resume=True)


def test_resume_refuses_changed_images_or_another_image_folder(tiny_adapter, tiny_suite: Path,  # noqa: ANN001
                                                               tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, limit=4)
    # negative control: nothing changed, the resume is accepted
    assert run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, limit=4, resume=True).results["complete"]
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_suite.parent / "images", copy / "images")
    with pytest.raises(AuditError, match=r"suite\.images_root differs"):
        run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, limit=4, resume=True, data_dir=copy)
    img = tiny_suite.parent / "images" / "img0.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (1, 2, 3)).save(img)
    with pytest.raises(AuditError, match=r"suite's content changed since: suite\.images_hash differs"):
        run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter, limit=4, resume=True)


def test_limit_is_a_subset_and_the_gate_refuses_it(tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    part, whole = tmp_path / "part", tmp_path / "whole"
    argv = ["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "-q"]
    assert run([*argv, "--limit", "4", "--output", str(part)]) == 0
    cap = capsys.readouterr()
    err, out = " ".join(cap.err.split()), " ".join(cap.out.split())  # rich wraps long lines
    assert "4 of 12 items (--limit 4) in" in err and "12 items in" not in err
    assert "(4 of 12 items (--limit 4), not the whole suite)" in out
    res = json.loads((part / "results.json").read_text())
    assert res["coverage"]["n_scored"] == 4 and res["coverage"]["n_items"] == 12 and res["complete"] is True
    assert run([*argv, "--output", str(whole)]) == 0
    assert json.loads((whole / "results.json").read_text())["coverage"]["n_scored"] == 12

    policy = tmp_path / "p.yaml"
    policy.write_text("suite: items\nchecks:\n  - metric: pct_biased\n    max: 100\n")
    capsys.readouterr()
    assert run(["gate", "--policy", str(policy), "--report", str(part)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "4 of 12 items" in err and "not the whole suite" in err
    assert gate(policy, report=whole).passed  # negative control: the whole suite is gated
    policy.write_text("suite: items\naccept_subset: true\nchecks:\n  - metric: pct_biased\n    max: 100\n")
    assert gate(policy, report=part).passed


def test_policy_pins_the_suite_content(tiny_adapter, tiny_suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    whole = run_scan(suite=str(tiny_suite), output=tmp_path / "whole", adapter=tiny_adapter)
    digest = whole.results["suite"]["content_hash"]
    # A hand-picked subset saved under the same name: all of *its* items are scored.
    picked = tmp_path / "picked" / "items.jsonl"
    picked.parent.mkdir()
    shutil.copytree(tiny_suite.parent / "images", picked.parent / "images")
    picked.write_text("".join(tiny_suite.read_text().splitlines(keepends=True)[:4]))
    sub = run_scan(suite=str(picked), output=tmp_path / "sub", adapter=tiny_adapter)
    assert sub.results["suite"]["name"] == "items" and not sub.record.coverage.subset
    policy = tmp_path / "p.yaml"
    policy.write_text(f"suite: items\nsuite_hash: sha256:{digest}\nchecks:\n  - metric: pct_biased\n    max: 100\n")
    with pytest.raises(AuditError, match="pins suite content"):
        gate(policy, report=sub.run_dir)
    assert gate(policy, report=whole.run_dir).passed


def test_a_second_writer_is_refused_naming_the_holder(tiny_adapter, tiny_suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    with RunLock(out, "scan"):
        with pytest.raises(AuditError, match=r"being written by another run \(scan, pid \d+"):
            run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter)
        assert not (out / "results.json").exists()
    assert run_scan(suite=str(tiny_suite), output=out, adapter=tiny_adapter).results["complete"]  # lock released
    assert not (out / ".mllm-audit.lock").exists()
