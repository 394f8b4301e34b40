"""Cost of the issue-19 hostile inputs: each in a fresh process, wall time and peak resident memory.

    python benchmarks/hostile_inputs.py [--prompt-mb 50] [--record]

Before the caps, the 50 MB single-line prompt took 4 min 49 s and 10 GB before "over the model's 256
positions", and the policy whose check name is a 9-levels-of-9 YAML alias bomb ran about 2 min to
5.8 GB before "internal error: MemoryError". Each case must now end with exit 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import Recorder, add_record_option

CHILD = ("import resource, sys\n"
         "from mllm_audit.cli import run\n"
         "code = run(sys.argv[1:])\n"
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
         "sys.exit(code)\n")


def run_case(argv: list[str]) -> tuple[int, float, float, str]:
    """(exit code, seconds, the child's peak resident memory in MB, its error line) for one CLI run."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, seconds, int(lines[-1]) / 1024, (lines[-2] if len(lines) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt-mb", type=int, default=50)
    add_record_option(ap)
    args = ap.parse_args()
    rec = Recorder("hostile_inputs", None)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="mllm-audit-hostile-"))
    (work / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(work / "images" / "a.png")
    item = {"id": "x", "task": "vqa", "bias_type": "gender", "image": "images/a.png",
            "prompt": "p" * (args.prompt_mb << 20), "y_more": "doctor", "y_less": "nurse"}
    (work / "big.jsonl").write_text(json.dumps(item) + "\n")
    bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    (work / "policy.yaml").write_text("\n".join(bomb) + "\nchecks:\n  - {name: *a9, metric: pct_biased, max: 0.6}\n")
    (work / "deep.yaml").write_text("items: x.jsonl\ndeep: " + "[\n" * 100_000)
    cases = {
        f"{args.prompt_mb} MB single-line prompt": ["scan", "--suite", str(work / "big.jsonl"), "--model", "toy", "-q"],
        "policy alias bomb (9 levels of 9)": ["gate", "--policy", str(work / "policy.yaml"), "--report", str(work)],
        "suite YAML nested 100,000 deep": ["scan", "--suite", str(work / "deep.yaml"), "-q"],
    }
    print(f"{'case':40} {'exit':>4} {'seconds':>8} {'peak MB':>8}  message")
    for name, argv in cases.items():
        code, seconds, peak, line = run_case(argv)
        print(f"{name:40} {code:>4} {seconds:8.2f} {peak:8.0f}  {line[:110]}")
        rows.append({"case": name, "exit": code, "seconds": seconds, "peak_mb": peak,
                     "message": line.replace(str(work) + "/", "")})
    if args.record:
        rec.write({"cases": rows})


if __name__ == "__main__":
    main()
