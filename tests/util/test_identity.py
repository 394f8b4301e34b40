"""The hash cache cannot be fooled or poisoned (util/identity.py); every image a run reads is in its identity."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mllm_audit.errors import AuditError
from mllm_audit.util import identity
from mllm_audit.util.identity import HashCache


def _rewrite_in_place(f: Path, data: bytes) -> None:
    """Same size, same inode, and the mtime set back as `touch -d` would: only ctime moves."""
    st = f.stat()
    time.sleep(0.01)
    with open(f, "r+b") as fh:
        fh.write(data)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = f.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert after.st_ctime_ns != st.st_ctime_ns


def test_a_file_changed_in_place_with_mtime_restored_is_hashed_again(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"a" * 4096)
    cache = HashCache(tmp_path / "cache.json")
    first = cache.sha256(f)
    cache.save()
    _rewrite_in_place(f, b"b" * 4096)
    again = HashCache(tmp_path / "cache.json")
    assert again.sha256(f) != first and again.misses == 1  # before: the cached (old) digest
    assert again.sha256(f) == identity.sha256_file(f)


def test_unchanged_file_is_a_cache_hit(tmp_path: Path) -> None:
    """Negative control: nothing changed, nothing hashed again."""
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 100)
    cache = HashCache(tmp_path / "cache.json")
    cache.sha256(f)
    cache.save()
    again = HashCache(tmp_path / "cache.json")
    again.sha256(f)
    assert (again.hits, again.misses) == (1, 0)


def test_rehash_ignores_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 100)
    cache = HashCache(tmp_path / "cache.json")
    cache.sha256(f)
    cache.save()
    forced = HashCache(tmp_path / "cache.json", rehash=True)
    forced.sha256(f)
    assert (forced.hits, forced.misses) == (0, 1)
    monkeypatch.setenv(identity.REHASH_ENV, "1")
    env = HashCache(tmp_path / "cache.json")
    env.sha256(f)
    assert (env.hits, env.misses) == (0, 1)


def test_cli_rehash_sets_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from mllm_audit.cli import run

    monkeypatch.delenv(identity.REHASH_ENV, raising=False)
    assert run(["--rehash", "ls", "suites"]) == 0
    assert identity.rehash_requested()
    monkeypatch.delenv(identity.REHASH_ENV)


def test_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(AuditError, match="not a regular file"):
        HashCache(tmp_path / "cache.json").sha256(fifo)


@pytest.mark.parametrize("what", ["fifo", "huge", "garbage", "list"])
def test_a_hostile_cache_costs_a_rehash(tmp_path: Path, what: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_file = tmp_path / "cache.json"
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 100)
    if what == "fifo":
        os.mkfifo(cache_file)  # read_text() blocked here before
    elif what == "huge":
        monkeypatch.setattr(identity, "MAX_CACHE_BYTES", 1000)
        cache_file.write_text(json.dumps({str(f.resolve()): {"sha256": "0" * 64}, "pad": {"x": "y" * 2000}}))
    elif what == "garbage":
        cache_file.write_bytes(b"\xff{[")
    else:
        cache_file.write_text("[1, 2]")
    cache = HashCache(cache_file)
    assert cache.sha256(f) == identity.sha256_file(f) and cache.misses == 1


def test_entries_of_files_that_are_gone_are_pruned(tmp_path: Path) -> None:
    keep, gone = tmp_path / "keep.bin", tmp_path / "gone.bin"
    keep.write_bytes(b"k")
    gone.write_bytes(b"g")
    cache = HashCache(tmp_path / "cache.json")
    cache.sha256(keep)
    cache.sha256(gone)
    gone.unlink()
    cache.save()
    assert list(json.loads((tmp_path / "cache.json").read_text())) == [str(keep.resolve())]


def test_mirror_images_are_in_the_suite_identity(tmp_path: Path) -> None:
    """fix's parity metrics read each item's mirror image: changing one changes the identity."""
    from PIL import Image

    from mllm_audit.runs.record import suite_identity
    from mllm_audit.suites.items import load_suite

    (tmp_path / "images").mkdir()
    for name in ("a.png", "a-m.png"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "images" / name)
    item = {"id": "i0", "task": "vqa", "bias_type": "gender", "image": "images/a.png", "prompt": "q?",
            "y_more": "x", "y_less": "y",
            "meta": {"mirrors": [{"image": "images/a-m.png", "y_more": "y", "y_less": "x"}]}}
    (tmp_path / "items.jsonl").write_text(json.dumps(item) + "\n")
    suite = load_suite(str(tmp_path / "items.jsonl"))
    before = suite_identity(suite, suite.items)
    Image.new("RGB", (8, 8), (99, 20, 30)).save(tmp_path / "images" / "a-m.png")
    after = suite_identity(suite, suite.items)
    assert before.n_images == 2 and before.images_hash != after.images_hash
