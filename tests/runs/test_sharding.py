"""Several processes: image-grouped shards, one merged report equal to a one-process run; device-map options."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from mllm_audit.cli import run
from mllm_audit.errors import AuditError
from mllm_audit.runs.options import parse_max_memory
from mllm_audit.runs.scan import run_scan
from mllm_audit.runs.sharding import current_processes, image_chunks, shard_chunks
from mllm_audit.suites.items import Item
from mllm_audit.util.files import read_jsonl


def _items(images: list[int]) -> list[Item]:
    return [Item(id=f"i{k}", task="vqa", bias_type="b", image=f"img{m}.png", prompt="q", y_more="a", y_less="b")
            for k, m in enumerate(images)]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shards_partition_whole_chunks_and_never_split_an_image(n: int) -> None:
    items = _items([0, 0, 1, 2, 2, 2, 3, 1, 4, 5, 5, 6, 7, 7, 8, 9])  # img1 appears twice, apart
    chunks = image_chunks(items, batch_size=2)
    assert [it.id for c in chunks for it in c] == [it.id for c in chunks for it in c]  # sanity
    images_per_chunk = [{it.image for it in c} for c in chunks]
    assert all(not (a & b) for i, a in enumerate(images_per_chunk) for b in images_per_chunk[i + 1:])
    shards = [shard_chunks(chunks, n, r) for r in range(n)]
    flat = [c for s in shards for c in s]
    assert flat == chunks  # every chunk on exactly one rank, in order
    images = [{it.image for c in s for it in c} for s in shards]
    assert all(not (a & b) for i, a in enumerate(images) for b in images[i + 1:])
    sizes = [sum(len(c) for c in s) for s in shards]
    assert max(sizes) - min(sizes) <= max(len(c) for c in chunks)  # balanced to within a chunk
    assert sorted(it.id for it in items) == sorted(it.id for c in flat for it in c)


def test_one_process_needs_no_accelerate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    p = current_processes()
    assert (p.index, p.count, p.is_main, p.broadcast("x")) == (0, 1, True, "x")
    p.wait()


def test_max_memory_parsing() -> None:
    assert parse_max_memory("0=20GiB,cpu=64GiB") == {0: "20GiB", "cpu": "64GiB"}
    assert parse_max_memory("cuda:1=8GB") == {1: "8GB"}
    assert parse_max_memory({"cpu": "1GiB"}) == {"cpu": "1GiB"}
    for bad in ("0=lots", "gpu0=1GiB", "cpu", "", "0=20GiB,,"):
        with pytest.raises(AuditError, match="--max-memory"):
            parse_max_memory(bad)


def test_device_map_options_reach_the_loader(tiny_blip2_dir: Path, tiny_suite: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = ["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "-q"]
    assert run([*base, "--output", str(tmp_path / "a"), "--max-memory", "cpu=1GiB"]) == 2
    assert "--device-map" in capsys.readouterr().err
    assert run([*base, "--output", str(tmp_path / "b"), "--device-map", "everywhere"]) == 2
    assert "--device-map must be one of" in capsys.readouterr().err
    mapped = run_scan(model=str(tiny_blip2_dir), suite=str(tiny_suite), output=tmp_path / "c", device_map="auto",
                      max_memory="cpu=2GiB")
    plain = run_scan(model=str(tiny_blip2_dir), suite=str(tiny_suite), output=tmp_path / "d")
    assert mapped.results["options"]["device_map"] == "auto"
    for x, y in zip(mapped.samples, plain.samples, strict=True):
        assert x["logp_more"] == pytest.approx(y["logp_more"], rel=1e-6, abs=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None or shutil.which("accelerate") is None,
                    reason="accelerate is not installed")
def test_two_processes_merge_into_the_one_process_report(tiny_blip2_dir: Path, tiny_suite: Path,
                                                         tmp_path: Path) -> None:
    # accelerate 1.15: `--cpu --num_processes 2` starts ONE process (multi-CPU needs mpirun); the
    # torchrun-based launcher is `--multi_gpu`, and on a machine without GPUs each process then
    # takes gloo on CPU (PartialState(cpu=True)).
    out = tmp_path / "two"
    argv = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
            "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "mllm_audit.cli", "scan",
            "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "--output", str(out), "--batch-size", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "NO_COLOR": "1"}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("% biased: items where") == 1  # rank 0 alone prints the table (and its legend)
    # The launcher gives each process one thread (OMP_NUM_THREADS=1); match it, so that the CPU
    # kernels reduce in the same order and the numbers can be compared exactly.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run(["scan", "--model", str(tiny_blip2_dir), "--suite", str(tiny_suite), "--output",
                    str(tmp_path / "one"), "--batch-size", "2", "-q"]) == 0
    finally:
        torch.set_num_threads(threads)
    two, one = read_jsonl(out / "samples.jsonl"), read_jsonl(tmp_path / "one" / "samples.jsonl")
    assert [s["item_id"] for s in two] == [s["item_id"] for s in one]
    for x, y in zip(two, one, strict=True):
        for key in ("logp_more", "logp_less", "margin"):
            assert x[key] == pytest.approx(y[key], abs=1e-6)
            assert x[key] == y[key]  # whole chunks per rank: the very same batches, bit for bit
        assert (x["n_tokens_more"], x["n_tokens_less"], x["biased"]) == (y["n_tokens_more"], y["n_tokens_less"],
                                                                       y["biased"])
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is True and res["options"]["processes"] == 2
    assert {s["run_id"] for s in two} == {res["run_id"]}
    assert res["counters"]["images_encoded"] == 6  # each of the 6 images on one rank only
    assert not (out / ".shards").exists()
    assert res["summary"] == json.loads((tmp_path / "one" / "results.json").read_text())["summary"]
