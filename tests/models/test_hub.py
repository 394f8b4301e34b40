"""`--model ORG/NAME[@REV]` through a local Hugging Face cache (the real snapshots/refs layout, made here),
with no network: the family comes from config.json, a scan equals the stock forward, the run records
the commit; a hub id not in the cache fails in one line, fast, offline or with the hub unreachable."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.models import load_model, resolve_card
from mllm_audit.testing.tiny_generic import save_tiny_generic

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HF_HUB_CACHE with models--tiny-org--tiny-qwen2-vl: snapshots/<commit>/ and refs/main -> commit."""
    root = tmp_path_factory.mktemp("hub")
    folder = save_tiny_generic("qwen2_vl", root / "src")
    repo = root / "cache" / "models--tiny-org--tiny-qwen2-vl"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v1").write_text(COMMIT)
    return root / "cache"


@pytest.fixture()
def offline(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def test_hub_id_resolves_through_the_cache_with_no_card(offline: Path) -> None:
    for spec in ("tiny-org/tiny-qwen2-vl", "tiny-org/tiny-qwen2-vl@main", "tiny-org/tiny-qwen2-vl@v1",
                 f"tiny-org/tiny-qwen2-vl@{COMMIT}"):
        card = resolve_card(spec)
        assert card.family == "generic" and card.revision == COMMIT, spec
        assert Path(card.weights) == offline / "models--tiny-org--tiny-qwen2-vl" / "snapshots" / COMMIT
    adapter = load_model("tiny-org/tiny-qwen2-vl@main")
    assert adapter.identity()["revision"] == COMMIT


def test_unknown_revision_and_missing_repo_fail_in_one_line(offline: Path) -> None:
    for spec in ("tiny-org/tiny-qwen2-vl@nope", "tiny-org/absent"):
        with pytest.raises(AuditError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE"):
            resolve_card(spec)


def test_unreachable_hub_fails_in_one_line_within_seconds(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert resolve_card("tiny-org/tiny-qwen2-vl").revision == COMMIT  # cached: no network needed
    start = time.monotonic()
    with pytest.raises(AuditError) as err:
        resolve_card("tiny-org/absent")
    assert time.monotonic() - start < 15 and "\n" not in str(err.value)
    assert "hub did not answer" in str(err.value)


def test_scan_hub_id_at_revision_records_the_commit(offline: Path, tiny_suite: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert run(["scan", "--model", "tiny-org/tiny-qwen2-vl@main", "--suite", str(tiny_suite), "--output", str(out),
                "-q"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["revision"] == COMMIT and results["model"]["family"] == "generic"
    assert run(["scan", "--model", "tiny-org/absent@main", "--suite", str(tiny_suite), "--output",
                str(tmp_path / "r2"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and "HF_HUB_OFFLINE" in err[-1]


@pytest.mark.parametrize("card", [None, "qwen2.5-vl-7b-instruct"])
def test_scan_of_a_tiny_qwen2_vl_folder_equals_the_stock_forward(hub_cache: Path, tiny_suite: Path, tmp_path: Path,
                                                                  card: str | None) -> None:
    """`scan --model FOLDER` (family from config.json, no card) and the same with `--card`: every sample's
    log-probabilities equal the stock forward over the processor's chat template."""
    import sys

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent))
    from test_generic import stock

    from mllm_audit.runs.scan import run_scan
    from mllm_audit.scoring.contract import Request

    folder = hub_cache / "models--tiny-org--tiny-qwen2-vl" / "snapshots" / COMMIT
    res = run_scan(model=str(folder), suite=str(tiny_suite), output=tmp_path / "run", card=card)
    adapter = load_model(str(folder), None)
    assert res.results["model"]["family"] == "generic"
    items = {json.loads(x)["id"]: json.loads(x) for x in tiny_suite.read_text().splitlines()}
    imgs: dict[str, Image.Image] = {}
    for s in res.samples:
        it = items[s["item_id"]]
        imgs.setdefault(it["image"], Image.open(tiny_suite.parent / it["image"]).convert("RGB"))
        for key, answer in (("logp_more", it["y_more"]), ("logp_less", it["y_less"])):
            ref = stock(adapter, Request(it["prompt"], answer, it["image"], it["task"]), imgs)
            assert abs(s[key] - ref) < 1e-5, (s["item_id"], key, s[key], ref)
        assert s["image_tokens"] >= 1



def test_every_model_loading_command_takes_revision() -> None:
    """--revision (the same as --model ORG/NAME@REV) and --trust-generic on every command that loads a model."""
    from typer.main import get_command

    from mllm_audit.cli import app

    commands = get_command(app).commands  # type: ignore[attr-defined]
    loaders = [name for name, cmd in commands.items() if any(p.name == "model" for p in cmd.params)]
    assert {"scan", "gen-scan", "fix", "train-editor", "locate", "study"} <= set(loaders)
    for option in ("revision", "trust_generic"):
        assert [n for n in loaders if not any(p.name == option for p in commands[n].params)] == [], option


def test_unchecked_architecture_needs_trust_generic_on_the_command_line(
    offline: Path, tiny_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Were Qwen2-VL not in the table, `scan` would refuse it in one line naming the table, and run it with
    --trust-generic (the flag reaches both the folder's resolution and the family's load)."""
    from mllm_audit.models import cards

    monkeypatch.setattr(cards, "GENERIC_ARCHITECTURES", {})
    folder = offline / "models--tiny-org--tiny-qwen2-vl" / "snapshots" / COMMIT
    argv = ["scan", "--model", str(folder), "--suite", str(tiny_suite), "-q"]
    assert run([*argv, "--output", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "docs/real-models.md" in err[-1] and "--trust-generic" in err[-1] and "Traceback" not in "\n".join(err)
    assert run([*argv, "--output", str(tmp_path / "r2"), "--trust-generic"]) == 0
