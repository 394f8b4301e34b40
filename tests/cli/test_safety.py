"""Safe loading: paths stay inside the suite, images are checked before decoding, weights are never unpickled."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.runs.scan import run_scan
from mllm_audit.suites.items import load_image, resolve_image_path
from mllm_audit.util.files import check_safetensors_files


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    full = capsys.readouterr().err.strip()
    # Progress lines (model load, the run folder) may come first; the error is one line, the last.
    lines = [x for x in full.splitlines() if x.startswith("mllm-audit:")]
    assert len(lines) == 1 and full.splitlines()[-1] == lines[0], full
    assert "Traceback" not in full and "internal error" not in full, full
    return lines[0]


def _suite_with_image(tmp_path: Path, tiny_suite: Path, image: str) -> Path:
    lines = tiny_suite.read_text().splitlines()
    obj = json.loads(lines[0])
    obj["image"] = image
    path = tiny_suite.parent / "escape.jsonl"
    path.write_text("\n".join([json.dumps(obj), *lines[1:]]) + "\n")
    return path


# ------------------------------------------------------------------------------------- image paths


@pytest.mark.parametrize(
    ("image", "needle"),
    [("../../etc/passwd", "escapes the suite folder"), ("/etc/passwd", "is absolute"),
     ("images/../../outside.png", "escapes the suite folder")],
)
def test_escaping_image_paths_are_refused(
    tmp_path: Path, tiny_suite: Path, capsys: pytest.CaptureFixture[str], image: str, needle: str
) -> None:
    bad = _suite_with_image(tmp_path, tiny_suite, image)
    out = tmp_path / "run"
    argv = ["scan", "--model", str(tmp_path / "never-loaded"), "--suite", str(bad), "--output", str(out), "-q"]
    assert run(argv) == 2
    err = _one_line(capsys)
    assert needle in err and "--allow-outside-paths" in err
    assert not out.exists()


def test_data_dir_is_the_root_that_paths_may_not_leave(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(AuditError, match="escapes"):
        resolve_image_path(root, "../secret.png")
    assert resolve_image_path(root, "a/b.png") == (root / "a" / "b.png").resolve()
    assert resolve_image_path(root, "../secret.png", allow_outside=True) == (tmp_path / "secret.png").resolve()


def test_symlink_out_of_the_suite_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "suite"
    root.mkdir()
    (root / "link.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(AuditError, match="escapes"):
        resolve_image_path(root, "link.png")


def test_allow_outside_paths_lets_an_absolute_image_through(tiny_adapter, tiny_suite: Path, tmp_path: Path) -> None:  # noqa: ANN001
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(tiny_suite.parent / "images" / "img0.png", outside / "abs.png")
    bad = _suite_with_image(tmp_path, tiny_suite, str(outside / "abs.png"))
    with pytest.raises(AuditError, match="is absolute"):
        run_scan(suite=str(bad), output=tmp_path / "r1", adapter=tiny_adapter)
    res = run_scan(suite=str(bad), output=tmp_path / "r2", adapter=tiny_adapter, allow_outside_paths=True)
    assert res.results["complete"] is True and len(res.samples) == 12


# ------------------------------------------------------------------------------------ image checks


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims width x height, with a token IDAT: a header-check target, never decodable."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_100_megapixel_png_refused_from_its_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    png = _png_header_only(tmp_path / "huge.png", 10000, 10000)
    assert png.stat().st_size < 1024

    def no_decode(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak out either
        with pytest.raises(AuditError, match="10000x10000 pixels, over the 40000000 limit"):
            load_image(png)


def test_huge_png_in_a_suite_exits_2_with_one_line(
    tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _png_header_only(tiny_suite.parent / "images" / "img2.png", 10000, 10000)
    assert run(["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "--output",
                str(tmp_path / "run"), "-q"]) == 2
    err = _one_line(capsys)
    assert "img2.png" in err and "10000x10000" in err


def test_unlisted_formats_and_oversized_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eps = tmp_path / "x.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(AuditError, match="not a PNG/JPEG"):
        load_image(eps)
    from PIL import Image

    ok = tmp_path / "ok.png"
    Image.new("RGB", (4, 4)).save(ok)
    assert load_image(ok).size == (4, 4)
    monkeypatch.setattr("mllm_audit.suites.items.MAX_IMAGE_BYTES", 10)
    with pytest.raises(AuditError, match="too large on disk"):
        load_image(ok)


# ---------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("payload", ["pickle", "torch.save"])
def test_pickle_named_safetensors_is_refused(
    tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], payload: str
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_blip2_dir, model)
    target = model / "model.safetensors"
    if payload == "pickle":
        target.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    else:
        import torch

        torch.save({"weight": torch.zeros(2)}, target)
    assert run(["scan", "--model", str(model), "--suite", str(tiny_suite), "--output", str(tmp_path / "r"), "-q"]) == 2
    err = _one_line(capsys)
    assert str(target) in err and "not safetensors" in err
    with pytest.raises(AuditError, match="not safetensors"):
        check_safetensors_files(model)
    check_safetensors_files(tiny_blip2_dir)  # the real file passes
    # Every loader, not only scan's early check: fix refuses it the same way.
    assert run(["fix", "--model", str(model), "--suite", str(tiny_suite), "--output", str(tmp_path / "f"), "-q"]) == 2
    assert "not safetensors" in _one_line(capsys)


def test_remote_code_only_when_asked(tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_load(spec: str, options):  # noqa: ANN001, ANN202
        seen.append(options.trust_remote_code)
        raise AuditError("stop here")

    monkeypatch.setattr("mllm_audit.models.load_model", fake_load)
    monkeypatch.setattr("mllm_audit.runs.scan.check_weights", lambda model, *_a, **_k: None)
    for flag in ([], ["--trust-remote-code"]):
        run(["scan", "--model", "x", "--suite", str(tiny_suite), "--output", str(tmp_path / "r"), "-q", *flag])
    assert seen == [False, True]


def test_source_never_unpickles_or_trusts_remote_code() -> None:
    """Every torch.load in the package passes weights_only=True; no pickle.load; no literal trust_remote_code=True."""
    root = Path(__file__).resolve().parents[2] / "mllm_audit"
    torch_loads = 0
    for f in root.rglob("*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            kw = {k.arg: k.value for k in node.keywords}
            if name == "torch.load":
                torch_loads += 1
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, f
            assert name not in ("pickle.load", "pickle.loads", "dill.load"), f
            tr = kw.get("trust_remote_code")
            assert not (isinstance(tr, ast.Constant) and tr.value is True), f
    assert torch_loads >= 1  # minigpt4's original checkpoints
