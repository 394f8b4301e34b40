"""Runs record the commit their weights came from: the user's --revision, the card's, else the local
hub snapshot's (a `snapshots/<commit>` folder, or `refs/main` for a hub id); a plain folder falls back
to its fingerprint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mllm_audit.models import load_model
from mllm_audit.models.base import LoadOptions, snapshot_revision

C1, C2 = "1" * 40, "ab" * 20


@pytest.fixture(scope="module")
def hub_cache(tiny_blip2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache holding acme/tiny-blip2 at two commits, refs/main -> C1."""
    cache = tmp_path_factory.mktemp("hub")
    repo = cache / "models--acme--tiny-blip2"
    for commit in (C1, C2):
        shutil.copytree(tiny_blip2_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(C1)
    return cache


def test_snapshot_folder_names_the_commit(hub_cache: Path) -> None:
    folder = hub_cache / "models--acme--tiny-blip2" / "snapshots" / C2
    adapter = load_model(str(folder))
    assert adapter.identity()["revision"] == C2


def test_hub_id_resolves_refs_main(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    assert snapshot_revision("acme/tiny-blip2") == C1
    (hub_cache / "models--acme--tiny-blip2" / "refs" / "main").write_text(C2 + "\n")
    try:
        assert snapshot_revision("acme/tiny-blip2") == C2
    finally:
        (hub_cache / "models--acme--tiny-blip2" / "refs" / "main").write_text(C1)
    # Controls: nothing cached, a ref to a snapshot that is not there, a non-commit folder name.
    assert snapshot_revision("acme/other") is None
    (hub_cache / "models--acme--gone" / "refs").mkdir(parents=True)
    (hub_cache / "models--acme--gone" / "refs" / "main").write_text(C1)
    assert snapshot_revision("acme/gone") is None


def test_user_revision_wins_and_plain_folders_are_fingerprinted(tiny_blip2_dir: Path, hub_cache: Path) -> None:
    folder = hub_cache / "models--acme--tiny-blip2" / "snapshots" / C1
    adapter = load_model(str(folder), LoadOptions(revision="v1.0"))
    assert adapter.identity()["revision"] == "v1.0"
    plain = load_model(str(tiny_blip2_dir)).identity()["revision"]
    assert snapshot_revision(str(tiny_blip2_dir)) is None
    assert plain.startswith("sha256:")  # the control: no snapshot, the fingerprint as before
