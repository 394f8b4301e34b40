# Over 350 lines: the scan run's lifecycle; resume, shards and their merge only make sense together.
"""`scan`: score every item of a suite under a model and write the run folder.

Order of work is chosen so that bad input fails before anything slow happens: arguments, the
suite, every image path, the output folder and the weight files are checked before the model
loads. `results.json` exists with `complete: false` from the moment the folder is created and
becomes `true` only at the end.

A run survives being stopped. Items are scored in chunks grouped by image (each distinct image is
still encoded once per run) and each chunk's samples are appended and fsync'ed as soon as it is
done, so a killed run keeps its finished chunks and `--resume` redoes only the rest. Ctrl-C and
SIGTERM end with one line and exit 130 / 143; an out-of-memory batch is retried at half the size,
which cannot change a score because scoring is batch-size invariant. At the end `samples.jsonl`
is rewritten once, atomically, in suite order, so a resumed or sharded run (several processes
under `accelerate launch`) leaves the same file as an uninterrupted one-process run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError
from mllm_audit.metrics.bias import bias_summary
from mllm_audit.models.cards import DEFAULT_MODEL
from mllm_audit.runs.greedy import DEFAULT_TOKENS
from mllm_audit.runs.options import check_device_available, check_scan_options, check_weights, parse_max_memory
from mllm_audit.runs.record import (
    Counters,
    Coverage,
    Identity,
    RunRecord,
    check_resume,
    model_identity,
    new_record,
    read_record,
    suite_identity,
)
from mllm_audit.runs.score import BatchSize, check_images, check_threads, score_items
from mllm_audit.runs.sharding import Processes, current_processes, image_chunks, shard_chunks
from mllm_audit.runs.signals import RunInterrupted, Terminated, interrupted, stop_signals
from mllm_audit.runs.writer import SAMPLE_SCHEMA, RunWriter, default_run_dir, new_run_id, read_results
from mllm_audit.suites.items import Item, Suite, load_suite
from mllm_audit.testing.hooks import chunk_delay
from mllm_audit.util.console import note
from mllm_audit.util.files import atomic_write_json, read_appended_jsonl, write_jsonl_atomic
from mllm_audit.util.folders import RunLock, check_run_folder

if TYPE_CHECKING:
    from mllm_audit.models.base import Adapter

DEFAULT_SUITE = "toy"
SHARDS_DIR = ".shards"  # per-rank sample files while several processes run
# Test hook: seconds to sleep after each chunk is written (lets tests kill a run part-way).


@dataclass
class ScanResult:
    run_dir: Path
    results: dict[str, Any]
    samples: list[dict[str, Any]]
    main_process: bool = True  # False on ranks > 0 of a multi-process run: they print nothing
    record: RunRecord | None = None  # the typed record behind `results`


ScanInterrupted = RunInterrupted  # Ctrl-C / SIGTERM: one line, exit 130 / 143 (runs/signals.py)
_Terminated = Terminated
_sigterm_raises = stop_signals


# ------------------------------------------------------------------------------- input checks


def _check_output(output: Path | None, resume: bool) -> None:
    """Never overwrite a run by accident; `--resume` continues one."""
    if output is None:
        if resume:
            raise AuditError("--resume needs --output RUN_DIR (the folder of the run to continue)")
        return
    check_run_folder(Path(output), "scan", resume)


def suite_extras(suite: Suite, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics a suite declares beyond the bias summary (parallel-image disparity)."""
    extras: dict[str, Any] = {}
    if suite.extra.get("disparity") == "pairs":
        from mllm_audit.metrics.disparity import disparity_summary

        extras["disparity"] = disparity_summary(samples)
    return extras


# -------------------------------------------------------------------------------------- resume


def _reusable(rec: dict[str, Any], wanted: set[str]) -> bool:
    """A sample line is reused only if it is whole and for an item of this selection."""
    return (
        rec.get("schema") == SAMPLE_SCHEMA
        and rec.get("item_id") in wanted
        and all(isinstance(rec.get(k), (int, float)) and not isinstance(rec.get(k), bool)
                for k in ("logp_more", "logp_less", "n_tokens_more", "n_tokens_less"))
    )


def _previous_samples(out_dir: Path, items: list[Item], identity: Identity,
                      selection: tuple[str | None, int | None] | None = None,
                      greedy: tuple[bool, int | None] = (False, None)) -> tuple[
    str | None, dict[str, dict[str, Any]]
]:
    """(run_id, reusable samples by item id) of the run in `out_dir`; nothing when there is none.

    Samples are reused only when the record names the same model files, suite items and images and
    score options; any difference is refused, naming the first field that differs.
    """
    if not (out_dir / "results.json").is_file():
        return None, {}
    old = read_record(out_dir)
    check_resume(old, identity, out_dir, "scan", verb="scanned", selection=selection)
    was = (bool(old.options.get("greedy")), old.options.get("greedy_tokens"))
    if was != greedy:  # reused samples would carry another decode (or none) under this record's greedy options
        def said(g: tuple[bool, int | None]) -> str:
            return f"--greedy --greedy-tokens {g[1]}" if g[0] else "without --greedy"

        raise AuditError(f"cannot resume {out_dir}: it was scanned {said(was)}, this run asks {said(greedy)}; "
                         "resume it with the same greedy options or choose another --output")
    wanted = {it.id for it in items}
    found: dict[str, dict[str, Any]] = {}
    files = [out_dir / "samples.jsonl", *sorted((out_dir / SHARDS_DIR).glob("rank*.jsonl"))]
    for f in files:
        records, _ = read_appended_jsonl(f)
        for rec in records:
            if _reusable(rec, wanted):
                found.setdefault(rec["item_id"], rec)
    run_id = old.header.run_id
    return (run_id if isinstance(run_id, str) and run_id else None), found


def _in_suite_order(items: list[Item], by_id: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [by_id[it.id] for it in items if it.id in by_id]


# ----------------------------------------------------------------------------------------- run


def run_scan(
    model: str = DEFAULT_MODEL,
    suite: str = DEFAULT_SUITE,
    data_dir: Path | None = None,
    output: Path | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    dtype: str = "fp32",
    device: str = "cpu",
    seed: int = 0,
    quantize: str | None = None,
    split: str | None = None,
    allow_outside_paths: bool = False,
    trust_remote_code: bool = False,
    resume: bool = False,
    device_map: str | None = None,
    max_memory: str | Mapping[Any, Any] | None = None,
    card: str | None = None,
    revision: str | None = None,
    threads: int | None = None,
    trust_generic: bool = False,
    max_pixels: int | None = None,
    image_size: int | None = None,
    greedy: bool = False,
    greedy_tokens: int = DEFAULT_TOKENS,
    *,
    adapter: Adapter | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
) -> ScanResult:
    """Scan `suite` under `model`; returns the run folder, results and samples.

    `progress(total)` may return a callback that receives the number of requests done per batch.
    `adapter` lets callers (tests, `fix`) reuse an already loaded model. `resume` continues the
    run in `output` (its matching samples are kept); without it an existing run there is refused.
    Under `accelerate launch` each process scores its own images and rank 0 writes the report.
    `max_pixels` is one budget for both: what a decoded image keeps (as the global `--max-pixels`) and,
    where a processor resizes to a pixel budget (Qwen2-VL family), that budget. `greedy` also records what the
    model would say per item (is_greedy over the pair, and the answer decoded in at most `greedy_tokens` new
    tokens, runs/greedy.py), summarised per group.
    """
    with stop_signals(), _decode_budget(max_pixels):
        try:
            return _run_scan(
                model, suite, data_dir, output, batch_size, limit, dtype, device, seed, quantize, split,
                allow_outside_paths, trust_remote_code, adapter, progress, resume, device_map, max_memory, card,
                revision=revision, threads=threads,
                load_extra={"trust_generic": trust_generic, "max_pixels": max_pixels, "image_size": image_size},
                greedy=greedy, greedy_tokens=greedy_tokens,
            )
        except Terminated:
            raise RunInterrupted("terminated (SIGTERM)", 143) from None


@contextlib.contextmanager
def _decode_budget(max_pixels: int | None) -> Iterator[None]:
    """`scan --max-pixels` also bounds decoded images for this run (suites.items.load_image reads it)."""
    from mllm_audit.suites.items import MAX_PIXELS_ENV

    before = os.environ.get(MAX_PIXELS_ENV)
    if max_pixels:
        os.environ[MAX_PIXELS_ENV] = str(int(max_pixels))
    try:
        yield
    finally:
        if max_pixels:
            if before is None:
                os.environ.pop(MAX_PIXELS_ENV, None)
            else:
                os.environ[MAX_PIXELS_ENV] = before


def _run_scan(
    model: str, suite: str, data_dir: Path | None, output: Path | None, batch_size: int, limit: int | None,
    dtype: str, device: str, seed: int, quantize: str | None, split: str | None, allow_outside_paths: bool,
    trust_remote_code: bool, adapter: Adapter | None, progress: Callable[[int], Callable[[int], None]] | None,
    resume: bool, device_map: str | None, max_memory: str | Mapping[Any, Any] | None, card: str | None = None,
    revision: str | None = None, threads: int | None = None,
    load_extra: dict[str, Any] | None = None, greedy: bool = False, greedy_tokens: int = DEFAULT_TOKENS,
) -> ScanResult:
    t0 = time.perf_counter()
    from mllm_audit.runs.sharding import world_size_from_env

    check_scan_options(batch_size, limit, dtype, device, quantize, split, device_map, max_memory, world_size_from_env())
    from mllm_audit.util.numbers import seed_ok

    seed_ok("--seed", seed)
    check_threads(threads)
    from mllm_audit.runs.greedy import check_greedy_tokens

    check_greedy_tokens(greedy_tokens)
    budget = parse_max_memory(max_memory)
    the_suite = load_suite(suite, data_dir=data_dir, allow_outside_paths=allow_outside_paths)
    items = the_suite.select(split=split, limit=limit)
    if not items:
        raise AuditError(f"suite {the_suite.name!r} has no items in split {split!r}")
    check_images(the_suite, items)
    _check_output(output, resume)
    if adapter is None:
        check_weights(model, bool((load_extra or {}).get("trust_generic")))
        check_device_available(device)

    import torch

    from mllm_audit.models import load_model
    from mllm_audit.models.base import LoadOptions

    procs = current_processes(device)
    if procs.count > 1 and device == "cuda":
        device = f"cuda:{procs.local_index}"
    torch.manual_seed(seed)
    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)  # for this run only: given back below
    if adapter is None:
        opts = LoadOptions(
            dtype=dtype, device=device, quantize=quantize, trust_remote_code=trust_remote_code,
            device_map=device_map, max_memory=budget, card=card, revision=revision,  # type: ignore[arg-type]  # GPU keys are ints
            **(load_extra or {}),
        )
        adapter = load_model(model, opts)
    t_loaded = time.perf_counter()
    out_dir = Path(output) if output is not None else _fresh_default_dir(adapter.card.name, the_suite.name)
    identity = Identity(model_identity(adapter.identity()), suite_identity(the_suite, items), {"seed": seed})
    lock = RunLock(out_dir, "scan")
    try:
        if procs.is_main:
            lock.acquire()  # one writer per folder: a second scan into it exits 2 naming this one
            if output is not None:
                check_run_folder(out_dir, "scan", resume)  # again, now that no one else can write it
        return _scan_locked(adapter, the_suite, items, identity, out_dir, procs, resume, batch_size, limit, split,
                            device, device_map, seed, progress, t0, t_loaded, greedy, greedy_tokens)
    finally:
        lock.release()
        torch.set_num_threads(threads_before)


def _scan_locked(
    adapter: Adapter, the_suite: Suite, items: list[Item], identity: Identity, out_dir: Path, procs: Processes,
    resume: bool, batch_size: int, limit: int | None, split: str | None, device: str, device_map: str | None,
    seed: int, progress: Callable[[int], Callable[[int], None]] | None, t0: float, t_loaded: float,
    greedy: bool = False, greedy_tokens: int = DEFAULT_TOKENS,
) -> ScanResult:
    old_run_id, reused = _previous_samples(
        out_dir, items, identity, (split, limit), (greedy, greedy_tokens if greedy else None)) if resume else (None, {})
    run_id = procs.broadcast(old_run_id or new_run_id())
    out_dir = procs.broadcast(out_dir)
    if procs.is_main:
        note(f"scan: {len(items)} items of {the_suite.name} -> {out_dir}")
    record = new_record(
        "scan", run_id, identity.model, identity.suite, seed, identity.score_options,
        options={"batch_size": batch_size, "limit": limit, "split": split, "device": device,
                 "device_map": device_map, "processes": procs.count, "threads": _threads(),
                 "greedy": greedy, "greedy_tokens": greedy_tokens if greedy else None},
        coverage=Coverage(n_items=len(the_suite.items), n_selected=len(items), n_scored=len(reused), split=split,
                          limit=limit),
        payload={"group_by": the_suite.extra.get("group_by")},
    )
    if resume:
        record.payload["resumed"] = {"reused_samples": len(reused)}
    procs.wait()  # every rank has read the old folder before rank 0 rewrites it
    if procs.is_main:
        _start_folder(out_dir, items, reused, record)
    procs.wait()

    pending = [it for it in items if it.id not in reused]
    mine = shard_chunks(image_chunks(pending, batch_size), procs.count, procs.index)
    counters_before = adapter.counters.as_dict()
    sizer = BatchSize(batch_size)
    done: list[dict[str, Any]] = []
    try:
        done = _score_chunks(adapter, the_suite, mine, run_id, out_dir, procs, sizer, progress, greedy,
                             greedy_tokens)
    except (KeyboardInterrupt, Terminated) as e:
        raise interrupted(e, f"{out_dir} keeps the finished chunks; continue with --resume --output {out_dir}") \
            from None
    t_scored = time.perf_counter()
    after = adapter.counters.as_dict()
    counters = {k: after[k] - counters_before[k] for k in after}
    if sizer.size != batch_size:
        record.options["batch_size_after_oom"] = sizer.size
    if procs.is_main:  # a reduced precision records what it cost against fp32 (runs/precision.py)
        from mllm_audit.runs.precision import precision_check

        check = precision_check(adapter, the_suite, items, [*reused.values(), *done], seed, sizer.size)
        if check is not None:
            record.payload["precision"] = check
    return _finish(
        out_dir, items, reused, done, record, counters, procs, the_suite,
        {"load_s": t_loaded - t0, "scoring_s": t_scored - t_loaded, "t0": t0},
    )


def _threads() -> int:
    """The CPU threads torch used (--threads, else torch's default): recorded, since timings depend on it."""
    import torch

    return torch.get_num_threads()


def _fresh_default_dir(model_name: str, suite_name: str) -> Path:
    """The default folder, made unique when two scans start within the same second."""
    out = default_run_dir("scan", model_name, suite_name)
    return out if not out.exists() else out.with_name(f"{out.name}-{new_run_id()[-8:]}")


def _start_folder(out_dir: Path, items: list[Item], reused: Mapping[str, dict[str, Any]],
                  record: RunRecord) -> None:
    """results.json (incomplete) plus samples.jsonl holding exactly the reused lines, torn lines gone."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AuditError(f"cannot create output folder {out_dir}: {e.strerror}") from None
    record.write(out_dir)
    write_jsonl_atomic(out_dir / "samples.jsonl", _in_suite_order(items, reused))
    shutil.rmtree(out_dir / SHARDS_DIR, ignore_errors=True)


def _score_chunks(
    adapter: Adapter, suite: Suite, chunks: list[list[Item]], run_id: str, out_dir: Path, procs: Processes,
    sizer: BatchSize, progress: Callable[[int], Callable[[int], None]] | None,
    greedy: bool = False, greedy_tokens: int = DEFAULT_TOKENS,
) -> list[dict[str, Any]]:
    """Score this process's chunks, appending each chunk's samples as soon as it finishes."""
    name = "samples.jsonl" if procs.count == 1 else f"{SHARDS_DIR}/rank{procs.index}.jsonl"
    tick = progress(2 * sum(len(c) for c in chunks)) if progress is not None and procs.is_main else None
    delay = chunk_delay()
    done: list[dict[str, Any]] = []
    with RunWriter(out_dir, run_id, samples_name=name, append=True) as writer:
        for chunk in chunks:
            samples = score_items(adapter, suite, chunk, run_id, sizer, on_progress=tick, greedy=greedy,
                                  greedy_tokens=greedy_tokens)
            writer.append(samples)
            done.extend(samples)
            if delay > 0:
                time.sleep(delay)
    return done


def _finish(
    out_dir: Path, items: list[Item], reused: Mapping[str, dict[str, Any]], done: list[dict[str, Any]],
    record: RunRecord, counters: dict[str, int], procs: Processes, suite: Suite, times: dict[str, float],
) -> ScanResult:
    """Rank 0 merges every rank's samples into suite order and marks the run complete."""
    if procs.count > 1:
        atomic_write_json(out_dir / SHARDS_DIR / f"rank{procs.index}.counters.json", counters)
    procs.wait()
    if not procs.is_main:
        procs.wait()  # rank 0 is writing the report
        res = read_results(out_dir)
        return ScanResult(run_dir=out_dir, results=res, samples=[], main_process=False)
    by_id: dict[str, dict[str, Any]] = dict(reused)
    if procs.count > 1:
        counters = dict.fromkeys(counters, 0)
        for rank in range(procs.count):
            records, _ = read_appended_jsonl(out_dir / SHARDS_DIR / f"rank{rank}.jsonl")
            for rec in records:
                by_id.setdefault(rec["item_id"], rec)
            part = json.loads((out_dir / SHARDS_DIR / f"rank{rank}.counters.json").read_text(encoding="utf-8"))
            counters = {k: counters[k] + int(part.get(k, 0)) for k in counters}
    else:
        for rec in done:
            by_id.setdefault(rec["item_id"], rec)
    missing = [it.id for it in items if it.id not in by_id]
    if missing:
        raise AuditError(
            f"{len(missing)} items have no sample after scoring (first: {missing[0]!r}); rerun with --resume"
        )
    samples = _in_suite_order(items, by_id)
    write_jsonl_atomic(out_dir / "samples.jsonl", samples)
    assert record.coverage is not None
    record.coverage.n_scored = len(samples)
    record.counters = Counters(**counters)
    record.payload["summary"] = bias_summary(samples, record.payload["group_by"])
    record.payload.update(suite_extras(suite, samples))
    if any("greedy" in s for s in samples):
        from mllm_audit.metrics.greedy import greedy_summary

        record.payload["greedy"] = greedy_summary(samples, record.payload["group_by"])
    record.finished({"load_s": times["load_s"], "scoring_s": times["scoring_s"],
                     "total_s": time.perf_counter() - times["t0"]})
    record.write(out_dir)
    shutil.rmtree(out_dir / SHARDS_DIR, ignore_errors=True)
    procs.wait()
    return ScanResult(run_dir=out_dir, results=record.to_dict(), samples=samples, record=record)
