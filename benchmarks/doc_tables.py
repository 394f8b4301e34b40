"""Render the number tables of docs/*.md and benchmarks/README.md from recorded benchmark runs.

    python benchmarks/doc_tables.py --check   # exit 1 and name every table that differs from its record
    python benchmarks/doc_tables.py --write   # rewrite the tables in place from benchmarks/records/*.json

A generated table sits between two markers:

    <!-- table NAME: rendered by benchmarks/doc_tables.py from benchmarks/records/FILE; do not edit -->
    ...
    <!-- /table NAME -->

Numbers are never typed by hand: a record (JSON, written by the benchmark script whose command it
stores) is the only source, and tests/test_doc_tables.py fails when a document's table differs from
the one rendered from its record.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
from doc_tables_toy import TABLES as TOY_TABLES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records"
BLOCK = re.compile(r"(<!-- table (?P<name>[\w-]+):[^\n]*-->\n)(?P<body>.*?)(<!-- /table (?P=name) -->)", re.S)


def _f(v: Any, nd: int = 2) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _ci(row: dict[str, Any], key: str, nd: int = 2) -> str:
    lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    return _f(row.get(key), nd) + (f" [{_f(lo, nd)}, {_f(hi, nd)}]" if lo is not None and hi is not None else "")


def render_five(rec: dict[str, Any]) -> list[str]:
    cols = (("Rel", "reliability"), ("T-Gen", "t_generality"), ("V-Gen", "v_generality"),
            ("T-Loc answer", "t_locality_top1"), ("M-Loc answer", "m_locality_top1"),
            ("T-Loc easyedit (top-1)", "t_locality_top1_easyedit"),
            ("M-Loc easyedit (top-10)", "m_locality_top10_easyedit"),
            ("perception loc", "perception_locality_top1"))
    out = ["| editor, objective | n | " + " | ".join(c for c, _ in cols) + " |",
           "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
    for name, row in rec["rows"].items():
        out.append(f"| {name} | {row['n']} | " + " | ".join(_f(row.get(k)) for _, k in cols) + " |")
    return out


def render_balance(rec: dict[str, Any]) -> list[str]:
    cols = (("Rel", "reliability"), ("balanced", "balanced"), ("t", "transfer_ratio"),
            ("mirror amplified", "mirror_amplified"), ("T-Gen − base", "t_generality_adjusted"),
            ("V-Gen − base", "v_generality_adjusted"), ("drift (nats)", "neighbour_drift"),
            ("M-Loc easyedit", "m_locality_top10_easyedit"))
    out = ["| editor, objective | n | " + " | ".join(c for c, _ in cols) + " |",
           "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
    for name, row in rec["rows"].items():
        out.append(f"| {name} | {row['n']} | " + " | ".join(_ci(row, k) for _, k in cols) + " |")
    return out


def render_paired(rec: dict[str, Any]) -> list[str]:
    keys = ("mirror_amplified", "mirror_delta", "balanced", "reliability", "neighbour_drift")
    out = ["| B − A (same edits) | " + " | ".join(keys) + " |", "| --- | " + " | ".join("---" for _ in keys) + " |"]
    for name, diffs in rec["paired_vs_flip"].items():
        cells = []
        for k in keys:
            d = diffs.get(k)
            p = "" if d is None else ("p<0.001" if d["p_value"] < 0.001 else f"p={d['p_value']:.3f}")
            cells.append("—" if d is None else f"{d['diff']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] {p}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def render_coverage(rec: dict[str, Any]) -> list[str]:
    out = ["| attribute | generator | true bias | N | coverage (new) | mean width | coverage (old bootstrap) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rec["rows"]:
        out.append(f"| {r['attribute']} | {r['generator']} | {r['true_bias']:.3f} | {r['n']} | {r['coverage']:.3f} "
                   f"| {r['mean_width']:.3f} | {r['coverage_old_bootstrap']:.3f} |")
    return out


# ---- benchmark records (benchmarks/_record.py: `--record` of each script) -----------------------------


def _machine(rec: dict[str, Any]) -> str:
    la = rec["load_average"]
    thr = rec.get("threads")
    threads = f"{thr} thread{'s' if thr != 1 else ''}" if thr else "default threads"
    return (f"{threads} on a shared {rec.get('cpus', '?')}-CPU machine, load average {la['start'][0]:.1f} -> "
            f"{la['end'][0]:.1f} (1 min), torch {rec['torch']}, {rec['date']}; figures measured under another "
            "load differ (timings especially; FLOP counts and memory do not).")


def _x(v: float) -> str:
    return f"{v:.2f}x"


SCAN_PATHS = (("minimum (shared prefixes, head where read)", "minimum"), ("**scan**", "scan"),
              ("today's scan (002b852: prefix per prompt, head at every position)", "today"),
              ("lm-eval-style loop", "lm-eval-style"), ("naive loop", "naive"))


def render_scan_flops(rec: dict[str, Any]) -> list[str]:
    shapes = rec["figures"]["shapes"]
    head = "| GFLOP per candidate | " + " | ".join(f"{k.upper()} ({v['parameters_m']}M) | x minimum"
                                                for k, v in shapes.items()) + " |"
    out = [head, "| --- |" + " --- | --- |" * len(shapes)]
    for label, key in SCAN_PATHS:
        cells = []
        for v in shapes.values():
            g = v["gflop_per_candidate"]
            cells += [f"{g[key]:.3f}", f"{g[key] / g['minimum']:.3f}"]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    diffs = ", ".join(f"{k.upper()} {v['max_abs_diff_nats']:.1e}" for k, v in shapes.items())
    return [*out, "", f"Max |scan − naive| over the first image's candidates (nats): {diffs}."]


def render_scan_timings(rec: dict[str, Any]) -> list[str]:
    timed = {k: v for k, v in rec["figures"]["shapes"].items() if "timings" in v}
    cols = [f"{k.upper()}, {v['images']} images, best of {v['timings']['repeats']}" for k, v in timed.items()]
    out = ["| timings | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    rates = [v["timings"]["candidates_per_s"] for v in timed.values()]
    for label, key in (("naive", "naive"), ("lm-eval-style", "lm-eval-style"), ("today's scan", "today's scan"),
                       ("**scan**", "scan")):
        out.append(f"| {label} | " + " | ".join(f"{r[key]:.2f} candidates/s" for r in rates) + " |")
    for label, key in (("scan / naive", "naive"), ("scan / lm-eval-style", "lm-eval-style"),
                       ("scan / today's scan", "today's scan")):
        out.append(f"| {label} | " + " | ".join(_x(r["scan"] / r[key]) for r in rates) + " |")
    out.append("| useful GFLOP/s (minimum / scan time) vs `torch.matmul` probe | " + " | ".join(
        f"{v['timings']['useful_gflops']:.1f} vs {v['timings']['matmul_probe_gflops']:.1f}" for v in timed.values())
        + " |")
    return out


def render_prefix_memory(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    out = [f"{f['image_tokens']} image tokens, {f['prefix_tokens']}-token prefix, {f['candidates']} candidates, "
           f"batch {f['batch_size']}; max |score difference| {f['max_abs_diff_nats']:.1e} nats.", "",
           "| path | peak above the weights | time |", "| --- | --- | --- |"]
    for label, key in (("today's scan", "today"), ("**scan**", "scan")):
        p = f["paths"][key]
        out.append(f"| {label} | {p['peak_gib']:.2f} GiB | {p['seconds']:.2f} s |")
    return out


def render_ftl_speed(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    g, per = f["gflop_per_edit"], f["seconds_per_edit"]
    out = [f"BLIP-2 {f['shape'].upper()} shape ({f['parameters_m']}M parameters), {f['steps']} AdamW steps per edit, "
           f"timed edits: {f['edits']}; max edited-weight difference: cached vs uncached "
           f"{f['max_weight_diff']['cached_vs_uncached']:.1e}, vs today {f['max_weight_diff']['cached_vs_today']:.1e}.",
           "", "| path | GFLOP per edit | s/edit |", "| --- | --- | --- |",
           f"| today (every layer each step, head everywhere, per-tensor AdamW) | {g['today']:.1f} | "
           f"{per['today']:.2f} |",
           f"| head only where the loss reads it | {g['head where read']:.1f} | |",
           f"| **frozen layers cached** (+ fused AdamW) | **{g['cached']:.1f}** "
           f"({g['today'] / g['cached']:.2f}x fewer) | "
           f"**{per['cached']:.2f} ({per['today'] / per['cached']:.2f}x faster)** |"]
    return out


def render_image_memory(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    out = [f"{f['count']} images ({f['disk_mb']:.1f} MB on disk, {f['side']} {f['format']}):", "",
           "| batch | no budget | per image (4 MP) | both (4 MP, 32 MP held) |", "| --- | --- | --- | --- |"]
    for batch, row in f["rows"].items():
        cells = [f"{row[k]['peak_mb']:,.0f} MB, {row[k]['seconds']:.1f} s" + ("" if row[k]["exit"] == 0 else
                 f" (exit {row[k]['exit']})") for k in ("none", "image", "both")]
        out.append(f"| {batch} | " + " | ".join(cells) + " |")
    return out


# Text, not figures: the checkpoints each architecture stands for, and what sets its image-token count.
GENERIC_EXAMPLES = {
    "qwen2_vl": ("Qwen/Qwen2-VL-7B-Instruct", " (pixel budget)"),
    "qwen2_5_vl": ("Qwen/Qwen2.5-VL-7B-Instruct (`qwen2.5-vl-7b-instruct`)", ""),
    "qwen3_vl": ("Qwen/Qwen3-VL-8B-Instruct (`qwen3-vl-8b-instruct`)", ""),
    "gemma3": ("google/gemma-3-4b-it (`gemma-3-4b-it`)", ""),
    "paligemma": ("google/paligemma2-3b-mix-448 (`paligemma2-3b-mix-448`)", ""),
    "idefics3": ("HuggingFaceM4/Idefics3-8B-Llama3 (`idefics3-8b-llama3`)", " (splits)"),
    "idefics2": ("HuggingFaceM4/idefics2-8b", ""),
    "llava": ("llava-hf/llava-1.5-7b-hf, mistral-community/pixtral-12b (`pixtral-12b`)", ""),
    "llava_next": ("llava-hf/llava-v1.6-mistral-7b-hf (`llava-v1.6-mistral-7b`)", " (any-res)"),
    "llava_onevision": ("llava-hf/llava-onevision-qwen2-7b-ov-hf (`llava-onevision-qwen2-7b-ov`)", ""),
    "vipllava": ("llava-hf/vip-llava-7b-hf", ""),
    "mllama": ("meta-llama/Llama-3.2-11B-Vision-Instruct (`llama-3.2-11b-vision-instruct`)", " (cross-attention)"),
    "internvl": ("OpenGVLab/InternVL3-2B-hf (`internvl3-2b`)", " (tiles)"),
    "smolvlm": ("HuggingFaceTB/SmolVLM2-2.2B-Instruct (`smolvlm2-2.2b-instruct`)", " (splits)"),
}


def render_generic(rec: dict[str, Any]) -> list[str]:
    out = ["| model_type | example checkpoint (card) | max abs diff, with image | without image | image tokens in "
           "the test |", "|---|---|---|---|---|"]
    for arch, r in rec["figures"]["architectures"].items():
        example, note = GENERIC_EXAMPLES.get(arch, ("—", ""))
        out.append(f"| {arch} | {example} | {r['with_image']:.2e} | {r['without_image']:.2e} | "
                   f"{', '.join(map(str, r['image_tokens']))}{note} |")
    n = {r["requests"] for r in rec["figures"]["architectures"].values()}
    return [f"Requests per architecture: {', '.join(map(str, sorted(n)))}.", "", *out]


def render_hash_speed(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    return [f"One {f['gib']:.2f} GiB random weight file in /tmp (page cache warm from writing it):", "",
            "| | time |", "| --- | --- |",
            f"| cold (no cache entry: full sha256, streamed in 8 MiB blocks) | {f['cold_s']:.2f} s "
            f"({f['cold_mib_per_s']:.0f} MiB/s) |",
            f"| warm (a new process reading the sidecar cache) | {f['warm_ms']:.2f} ms |"]


def render_hostile(rec: dict[str, Any]) -> list[str]:
    out = ["| case | exit | seconds | peak MB | refused because |", "| --- | --- | --- | --- | --- |"]
    for c in rec["figures"]["cases"]:
        msg = c["message"].removeprefix("mllm-audit: error: ").replace("|", "\\|")
        out.append(f"| {c['case']} | {c['exit']} | {c['seconds']:.2f} | {c['peak_mb']:.0f} | `{msg}` |")
    return out


def render_edit_speed(rec: dict[str, Any]) -> list[str]:
    out = ["| model | parameters | FT-L s/edit | IKE s/edit | edits |", "| --- | --- | --- | --- | --- |"]
    for m in rec["figures"]["models"]:
        out.append(f"| {m['label']} | {m['parameters_m']}M | {m['ft-l']['s_per_edit']:.3f} | "
                   f"{m['ike']['s_per_edit']:.3f} | {m['ft-l']['edits']} |")
    return out


FLOOR_LABELS = {"8": "8 (the old default)", "64": "**64 (the default now)**", "160": "160 (the paper's full protocol)"}


def render_gen_floor(rec: dict[str, Any]) -> list[str]:
    rows = rec["figures"]["rows"]
    names = list(next(iter(rows.values())))
    out = ["| N | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for n, row in rows.items():
        out.append(f"| {FLOOR_LABELS.get(n, n)} | " + " | ".join(f"{row[k]:.3f}" for k in names) + " |")
    return out


def render_scan_throughput(rec: dict[str, Any]) -> list[str]:
    f = rec["figures"]
    n = f["candidates"]
    return [f"BLIP-2 shape, {f['parameters_m']}M random parameters; {f['images']} images x {f['prompts']} prompts x 2 "
            f"answers = {n} candidates; max |score difference| {f['max_abs_diff_nats']:.1e} nats.", "",
            "| path | candidates/s | |", "| --- | --- | --- |",
            "| naive loop (one candidate per stock forward, image re-encoded each time, as EasyEdit evaluates) | "
            f"{n / f['naive_s']:.2f} | {f['naive_s']:.1f} s |",
            f"| `scan` (image encoded once, shared prefixes, batches of {f['batch_size']}) | {n / f['scan_s']:.2f} | "
            f"{f['scan_s']:.1f} s |",
            f"| speed-up (target: at least 5x) | {f['naive_s'] / f['scan_s']:.2f}x | |"]


def render_gen_batch(rec: dict[str, Any]) -> list[str]:
    """gen-scan's generation by batch: per-image rows across prompts against one prompt per call."""
    f = rec["figures"]
    out = [f"{f['prompts']} prompts x {f['images_per_prompt']} images, {f['model']['image_tokens']} image tokens, "
           f"best of {f['repeats']}; per-image images identical at every batch: "
           f"{'yes' if f['per_image_identical_across_batches'] else 'NO'}.", "",
           "| batch | per-image, rows across prompts (images/s) | upstream, one prompt per call (images/s) "
           "| upstream rows per call |",
           "| --- | --- | --- | --- |"]
    for r in f["rows"]:
        out.append(f"| {r['batch']} | {r['per_image_images_per_s']:.2f} | {r['upstream_images_per_s']:.2f} "
                   f"| {r['upstream_rows_per_call']} |")
    return out


TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "five": ("balance_table.json", render_five),
    "balance": ("balance_table.json", render_balance),
    "objectives-vs-flip": ("balance_table.json", render_paired),
    "gen-coverage": ("gen_coverage.json", render_coverage),
    "scan-flops": ("scan_flops.json", render_scan_flops),
    "scan-timings": ("scan_flops.json", render_scan_timings),
    "prefix-memory": ("prefix_memory.json", render_prefix_memory),
    "ftl-speed": ("ftl_speed.json", render_ftl_speed),
    "image-memory-16": ("image_memory_16.json", render_image_memory),
    "image-memory-64": ("image_memory_64.json", render_image_memory),
    "generic-conformance": ("generic_conformance.json", render_generic),
    "hash-speed": ("hash_speed.json", render_hash_speed),
    "hostile-inputs": ("hostile_inputs.json", render_hostile),
    "edit-speed": ("edit_speed.json", render_edit_speed),
    "gen-floor": ("gen_floor.json", render_gen_floor),
    "scan-throughput": ("scan_throughput.json", render_scan_throughput),
    # toy world v3 (`toy-v3`): python benchmarks/balance_table.py --model toy-v3 --out ...balance_table_v3.json
    "five-v3": ("balance_table_v3.json", render_five),
    "balance-v3": ("balance_table_v3.json", render_balance),
    "objectives-vs-flip-v3": ("balance_table_v3.json", render_paired),
    "gen-batch": ("gen_batch.json", render_gen_batch),
}
TABLES.update(TOY_TABLES)  # the toy worlds' tables: benchmarks/doc_tables_toy.py


def render(name: str, records: Path = RECORDS) -> str:
    """The body between a table's markers: the command that recorded it, a blank line, the table."""
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r} (known: {', '.join(TABLES)})")
    file, fn = TABLES[name]
    rec = json.loads((records / file).read_text(encoding="utf-8"))
    lines = [f"Recorded with `{rec['command'].strip()}` ({file}).", "", *fn(rec)]
    if "load_average" in rec:  # a benchmark record (benchmarks/_record.py): where and under what load
        lines[1:1] = [_machine(rec)]
    return "\n".join(lines) + "\n"


def documents(root: Path = ROOT) -> list[Path]:
    return [*sorted((root / "docs").glob("*.md")), root / "benchmarks" / "README.md"]


def differences(paths: list[Path], records: Path = RECORDS) -> list[str]:
    """One line per generated table whose text differs from its rendering (empty: all match)."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            if m.group("body") != render(m.group("name"), records):
                out.append(f"{path}: table {m.group('name')!r} differs from benchmarks/records "
                           f"({TABLES[m.group('name')][0]}); run python benchmarks/doc_tables.py --write")
    return out


# Tables of settings, definitions or arithmetic, not of measurements: their first header cell.
NOT_FIGURES = ("| |", "| objective |", "| metric |", "| EasyEdit alg_name |", "| editor | `fix --set` |",
               "| card | parameters |")


def loose_tables(paths: list[Path]) -> list[str]:
    """One line per table with a decimal number in its rows that stands outside any generated block
    (figures typed by hand), tables of settings (NOT_FIGURES) aside."""
    out = []
    for path in paths:
        text = BLOCK.sub("", path.read_text(encoding="utf-8"))
        for m in re.finditer(r"(?m)^(\|[^\n]*\n)+", text):
            lines = m.group(0).splitlines()
            if not lines[0].startswith(NOT_FIGURES) and any(re.search(r"\d\.\d", x) for x in lines[2:]):
                out.append(f"{path}: a table of figures outside <!-- table --> markers: {lines[0][:60]}")
    return out


def write(paths: list[Path], records: Path = RECORDS) -> int:
    n = 0
    for path in paths:
        text = path.read_text(encoding="utf-8")
        new = BLOCK.sub(lambda m: m.group(1) + render(m.group("name"), records) + m.group(4), text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="the default: name every table that differs")
    mode.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.write:
        print(f"rewrote {write(documents())} documents")
        return
    diff = differences(documents()) + loose_tables([*documents(), ROOT / "README.md"])
    print("\n".join(diff) or "every generated table matches its record")
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
