"""Property-based: generated bad suite files, policy files, model cards, editor states and command
lines always get one line and exit 2, within bounded time and memory.

Every input here is bad by construction (a valid base with one guaranteed-invalid change), so the
only acceptable answer is `mllm-audit: error: <one line>` on stderr and exit code 2: never a
traceback, never an "internal error", never a model load. The scan cases pass a model that does not
exist, so a suite that slipped through as valid would show up as "unknown model" and fail the test.
Hostile inputs (alias bombs, deep nesting, huge lines, paths out of the suite) are among them, and
every case runs under `bounded`: more than MAX_SECONDS or MAX_BYTES fails it. The worst case seen
is printed at the end (`pytest -s`). About 5,000 examples in all; only the editor-state cases use a
(tiny) model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mllm_audit.scoring.contract  # noqa: F401 - imported once here: a one-time import is not a case's cost
from mllm_audit.cli import run
from mllm_audit.gate.policy import METRICS
from mllm_audit.runs.writer import RESULTS_SCHEMA, SAMPLE_SCHEMA
from mllm_audit.suites.items import SPLITS, TASKS
from mllm_audit.util.files import atomic_write_json

# The fast suite runs a tenth of each budget; CI's slow pass sets MLLM_AUDIT_FUZZ_SCALE=1 for all of it.
FUZZ_SCALE = float(os.environ.get("MLLM_AUDIT_FUZZ_SCALE") or 0.1)


def fuzz(n: int) -> settings:
    """n examples (times FUZZ_SCALE), fixed seed (reproducible in CI), no example database in the tree."""
    return settings(
        max_examples=max(10, int(n * FUZZ_SCALE)), deadline=None, database=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )
WORK = Path(tempfile.mkdtemp(prefix="mllm-audit-fuzz-"))
NO_MODEL = str(WORK / "no-such-model")


def _image() -> str:
    from PIL import Image

    (WORK / "images").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(WORK / "images" / "a.png")
    return "images/a.png"


IMAGE = _image()


MAX_SECONDS = 5.0
MAX_BYTES = 500 * 1024 * 1024
WORST: dict[str, Any] = {"cases": 0, "seconds": 0.0, "bytes": 0, "slowest": None, "largest": None}


def bounded(fn: Callable[[], Any], label: Any) -> Any:
    """Run one case, failing it past MAX_SECONDS of CPU time (the machine is shared: wall time would
    measure the neighbours) or MAX_BYTES (Python heap peak, or growth of the process's peak resident
    memory for what torch and C libraries allocate)."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    t0 = time.process_time()
    try:
        return fn()
    finally:
        seconds = time.process_time() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        used = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0)
        WORST["cases"] += 1
        if seconds > WORST["seconds"]:
            WORST["seconds"], WORST["slowest"] = seconds, repr(label)[:120]
        if used > WORST["bytes"]:
            WORST["bytes"], WORST["largest"] = used, repr(label)[:120]
        assert seconds <= MAX_SECONDS, f"case took {seconds:.1f} s of CPU: {label!r:.200}"
        assert used <= MAX_BYTES, f"case used {used / 2**20:.0f} MB: {label!r:.200}"


def _cli(argv: list[str], bound: bool = True) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            return run(argv)

    code = bounded(call, argv) if bound else call()
    return code, err.getvalue()


def assert_one_line_exit_2(code: int, err: str, argv: list[str]) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err, argv)
    assert len(lines) == 1 and lines[0].startswith("mllm-audit: error: "), (err, argv)
    assert "Traceback" not in err and "internal error" not in err, (err, argv)


# ------------------------------------------------------------------------------------- suite files

text = st.text(min_size=0, max_size=12)
non_blank = st.text(min_size=1, max_size=12).filter(lambda s: s.strip())
not_a_string = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(),
                         st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2))
blank = st.sampled_from(["", " ", "\t", "\n "])
REQUIRED = ("id", "task", "bias_type", "image", "prompt", "y_more", "y_less")
OPTIONAL = ("cluster", "split", "rephrase_prompt", "rephrase_image", "loc_prompt", "loc_answer",
            "m_loc_image", "m_loc_prompt", "m_loc_answer")
ALLOWED = set(REQUIRED) | set(OPTIONAL) | {"meta"}


def valid_item(k: int, prompt: str = "q?") -> dict[str, Any]:
    return {"id": f"i{k}", "task": "vqa", "bias_type": "gender", "image": IMAGE, "prompt": prompt or "q?",
            "y_more": "doctor", "y_less": "nurse", "meta": {"k": k}}


@st.composite
def bad_line(draw: st.DrawFn) -> str | bytes:
    """One item line that must be refused."""
    item = valid_item(999, draw(non_blank))
    kind = draw(st.integers(0, 15))
    if kind == 0:
        del item[draw(st.sampled_from(REQUIRED))]
    elif kind == 1:
        item[draw(st.sampled_from(REQUIRED))] = draw(not_a_string)
    elif kind == 2:
        item[draw(st.sampled_from(REQUIRED))] = draw(blank)
    elif kind == 3:
        item["task"] = draw(text.filter(lambda s: s not in TASKS))
    elif kind == 4:
        item["split"] = draw(st.one_of(text.filter(lambda s: s not in SPLITS), st.integers(), st.booleans()))
    elif kind == 5:
        item[draw(st.text(min_size=1, max_size=10).filter(lambda s: s not in ALLOWED))] = draw(text)
    elif kind == 6:
        item["meta"] = draw(st.one_of(non_blank, st.integers(1), st.lists(st.integers(), min_size=1)))
    elif kind == 7:
        item["y_less"] = item["y_more"] = draw(non_blank)
    elif kind == 8:
        a, b = draw(st.sampled_from([("loc_prompt", "loc_answer"), ("m_loc_prompt", "m_loc_answer"),
                                     ("m_loc_image", "m_loc_prompt")]))
        item[draw(st.sampled_from([a, b]))] = draw(non_blank)
    elif kind == 9:
        item[draw(st.sampled_from(OPTIONAL))] = draw(st.one_of(blank, st.integers(), st.lists(st.integers())))
    elif kind == 10:
        item["image"] = "../" * draw(st.integers(1, 6)) + draw(non_blank).replace("\x00", "")
    elif kind == 11:
        item["image"] = "/" + draw(st.sampled_from(["etc/passwd", "tmp/x.png", "nope"]))
    elif kind == 12:
        item["image"] = "images/missing-" + draw(st.text(alphabet="abcxyz0123", max_size=8)) + ".png"
    elif kind == 13:
        return json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), non_blank,
                                         st.booleans(), st.none())))
    elif kind == 14:
        return "{" + draw(text)
    else:
        return b"\xff\xfe" + draw(st.binary(max_size=10))
    return json.dumps(item)


@given(bad=bad_line(), n_good=st.integers(0, 3), where=st.integers(0, 3), prompts=st.lists(non_blank, max_size=3))
@fuzz(600)
def test_bad_suite_lines_one_line_exit_2(bad: str | bytes, n_good: int, where: int, prompts: list[str]) -> None:
    good = [json.dumps(valid_item(k, prompts[k] if k < len(prompts) else "q?")).encode() for k in range(n_good)]
    lines = good[:where] + [bad if isinstance(bad, bytes) else bad.encode()] + good[where:]
    path = WORK / "suite.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    argv = ["scan", "--suite", str(path), "--model", NO_MODEL, "--output", str(WORK / "out"), "-q"]
    code, err = _cli(argv)
    assert_one_line_exit_2(code, err, argv)
    assert "unknown model" not in err, f"a bad suite line was accepted: {bad!r}"


def alias_bomb(levels: int, width: int) -> str:
    """`levels` anchors, each a list of `width` aliases of the one before: width**levels leaves."""
    lines = ["a0: &a0 [" + ",".join(['"lol"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@st.composite
def hostile_yaml(draw: st.DrawFn, body: str) -> str:
    """A YAML text `body` made hostile: an alias bomb, a duplicated key, deep nesting or a huge line."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return alias_bomb(draw(st.integers(1, 12)), draw(st.integers(2, 12))) + body
    if kind == 1:
        first = body.splitlines()[0]
        return body + first + "\n"  # the first top-level key again
    if kind == 2:
        n = draw(st.integers(40, 5000))
        return body + "deep: " + draw(st.sampled_from(["[", "{a: "])) * n + "\n"
    if kind == 3:
        return body + "description: " + "x" * draw(st.integers(10_001, 200_000)) + "\n"
    return body + "# " + "y" * (1024 * 1024 + draw(st.integers(1, 1000))) + "\n"  # over the file cap


@given(
    kind=st.integers(0, 11),
    junk=st.dictionaries(st.sampled_from(["name", "description", "license", "source", "group_by", "images_dir"]),
                         st.one_of(text, st.integers(), st.none()), max_size=4),
    raw=st.text(max_size=30),
    data=st.data(),
)
@fuzz(400)
def test_bad_suite_yaml_one_line_exit_2(kind: int, junk: dict[str, Any], raw: str, data: st.DataObject) -> None:
    items = WORK / "ok.jsonl"
    items.write_text(json.dumps(valid_item(0)) + "\n")
    header: Any = {**junk, "items": "ok.jsonl"}
    header.pop("images_dir", None)
    if kind == 0:
        del header["items"]
    elif kind == 1:
        header["kind"] = raw if raw != "likelihood" else "generation"
    elif kind == 2:
        header["items"] = "missing-" + raw.replace("\x00", "") + ".jsonl"
    elif kind == 3:
        header = [header, raw]
    elif kind == 6:  # images_dir out of the suite folder, climbing or absolute
        header["images_dir"] = data.draw(st.one_of(st.integers(1, 12).map(lambda k: "../" * k),
                                                   st.sampled_from(["/", "/tmp", "/etc", str(WORK.parent)])))
    elif kind == 7:  # items out of the suite folder
        header["items"] = data.draw(st.one_of(st.integers(1, 6).map(lambda k: "../" * k + WORK.name + "/ok.jsonl"),
                                              st.just(str(WORK / "ok.jsonl"))))
    elif kind == 8:  # a path that is not a string, or holds a NUL byte
        header[data.draw(st.sampled_from(["items", "images_dir"]))] = data.draw(st.one_of(
            st.integers(), st.lists(st.integers(), min_size=1, max_size=3), st.just("ok\x00.jsonl")))
    path = WORK / "suite-dir" / "suite.yaml"
    path.parent.mkdir(exist_ok=True)
    (path.parent / "ok.jsonl").write_text(json.dumps(valid_item(0)) + "\n")
    if kind == 4:
        path.write_text("items: [unclosed\n  - " + raw + "\n: :\n")
    elif kind == 5:
        path.write_bytes(b"items: \xff\xfe" + raw.encode())
    elif kind >= 9:
        path.write_text(data.draw(hostile_yaml("items: ok.jsonl\n")))
    else:
        path.write_text(yaml.safe_dump(header, allow_unicode=True))
    argv = ["scan", "--suite", str(path), "--model", NO_MODEL, "--output", str(WORK / "out"), "-q"]
    code, err = _cli(argv)
    assert_one_line_exit_2(code, err, argv)
    assert "unknown model" not in err


# ------------------------------------------------------------------------------------ policy files


def _run_folder() -> Path:
    """A complete run in the real format with rows 'gender' and 'all' (suite 'toy')."""
    from mllm_audit.metrics.bias import bias_summary, sample_record
    from mllm_audit.suites.items import Item

    folder = WORK / "run"
    folder.mkdir(exist_ok=True)
    samples = [
        sample_record("r1", Item(id=f"g{i}", task="vqa", bias_type="gender", image=f"{i}.png", prompt="q",
                                 y_more="a", y_less="b"), -3.0 + (i % 2), 1, -3.0, 1, SAMPLE_SCHEMA)
        for i in range(6)
    ]
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    atomic_write_json(folder / "results.json", {
        "schema": RESULTS_SCHEMA, "command": "scan", "run_id": "r1", "complete": True,
        "model": {"name": "tiny"}, "suite": {"name": "toy", "content_hash": "x", "n_items": 6},
        "group_by": None, "summary": bias_summary(samples),
    })
    return folder


RUN = _run_folder()
bad_number = st.one_of(
    non_blank.filter(lambda s: not _is_number(s)), st.booleans(), st.lists(st.integers(), max_size=2),
    st.sampled_from([float("nan"), float("inf"), -float("inf")]), st.integers(min_value=10**309, max_value=10**400),
)


def _is_number(s: str) -> bool:
    try:
        v = yaml.safe_load(s)
    except yaml.YAMLError:
        return False
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@st.composite
def bad_policy(draw: st.DrawFn) -> Any:
    """A policy document (or raw text/bytes) that must be refused."""
    check: dict[str, Any] = {"name": "c", "metric": "pct_biased", "max": 60}
    policy: dict[str, Any] = {"suite": "toy", "checks": [check]}
    kind = draw(st.integers(0, 21))
    if kind == 0:
        return draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), non_blank.map(lambda s: "- " + s)))
    if kind == 1:
        policy[draw(st.text(min_size=1, max_size=8).filter(lambda s: s not in ("suite", "description", "checks")))] = 1
    elif kind == 2:
        policy["checks"] = draw(st.one_of(st.just([]), st.none(), st.integers(), non_blank, st.dictionaries(
            st.text(max_size=3), st.integers(), max_size=2)))
    elif kind == 3:
        policy["checks"] = [draw(st.one_of(st.integers(), non_blank, st.lists(st.integers(), max_size=2), st.none()))]
    elif kind == 4:
        keys = ("name", "bias_type", "metric", "max", "min", "baseline", "max_increase", "alpha")
        check[draw(st.text(min_size=1, max_size=8).filter(lambda s: s not in keys))] = draw(text)
    elif kind == 5:
        del check["metric"]
    elif kind == 6:
        check["metric"] = draw(st.one_of(text.filter(lambda s: s not in METRICS), st.integers(), st.none()))
    elif kind == 7:
        check["bias_type"] = draw(st.one_of(blank, st.integers(), st.lists(st.integers(), min_size=1)))
    elif kind == 8:
        check["metric"], check["bias_type"] = "reliability", "gender"
    elif kind == 9:
        check[draw(st.sampled_from(["max", "min"]))] = draw(bad_number)
    elif kind == 10:
        del check["max"]
    elif kind == 11:
        lo = draw(st.floats(-1e6, 1e6))
        check["min"], check["max"] = lo + draw(st.floats(1e-3, 1e3)), lo
    elif kind == 12:
        check[draw(st.sampled_from(["max_increase", "alpha"]))] = draw(st.floats(0, 1))
    elif kind == 13:
        del check["max"]
        check.update(baseline=str(WORK / ("missing-" + draw(st.text(alphabet="abc123", max_size=6)))),
                     max_increase=0.1)
    elif kind == 14:
        del check["max"]
        check["baseline"] = str(RUN)
        bad = draw(st.integers(0, 3))
        if bad == 0:
            check["metric"] = "ci_high"
            check["max_increase"] = 0.1
        elif bad == 1:
            pass  # no max_increase
        elif bad == 2:
            check["max_increase"] = -draw(st.floats(1e-6, 1e6))
        else:
            check["max_increase"], check["alpha"] = 0.1, draw(st.one_of(st.floats(1, 10), st.floats(-10, 0)))
    elif kind == 15:
        policy["checks"] = [check, dict(check)]
    elif kind == 16:
        check["name"] = draw(st.one_of(blank, st.integers(), st.lists(st.integers(), min_size=1)))
    elif kind == 17:
        policy["suite"] = draw(non_blank.filter(lambda s: s != "toy"))
    elif kind == 18:
        return "checks: [" + draw(text) + "\n  bad: : ]"
    elif kind == 19:
        return b"checks:\n  - \xff\xfe" + draw(st.binary(max_size=10))
    elif kind == 20:  # the bomb: a check name that is an alias of 9 levels of 9
        levels, width = draw(st.integers(1, 9)), draw(st.integers(2, 9))
        return alias_bomb(levels, width) + f"checks:\n  - {{name: *a{levels}, metric: pct_biased, max: 60}}\n"
    else:
        return draw(hostile_yaml("checks:\n  - {name: c, metric: pct_biased, max: 60}\n"))
    return policy


@given(policy=bad_policy())
@fuzz(900)
def test_bad_policies_one_line_exit_2(policy: Any) -> None:
    path = WORK / "policy.yaml"
    if isinstance(policy, bytes):
        path.write_bytes(policy)
    elif isinstance(policy, str):
        path.write_text(policy)
    else:
        path.write_text(yaml.safe_dump(policy, allow_unicode=True))
    argv = ["gate", "--policy", str(path), "--report", str(RUN)]
    code, err = _cli(argv)
    assert_one_line_exit_2(code, err, argv)


# -------------------------------------------------------------------------------------- arguments

SCAN_OPTIONS = {"--model", "-m", "--suite", "-s", "--data-dir", "--output", "-o", "--batch-size", "--limit", "--split",
                "--dtype", "--device", "--quantize", "--seed", "--allow-outside-paths", "--trust-remote-code",
                "--quiet", "-q", "--resume", "--device-map", "--max-memory", "--help", "-h",
                "--no-allow-outside-paths", "--no-trust-remote-code", "--no-resume"}
not_int = st.text(min_size=1, max_size=8).filter(lambda s: not s.strip().lstrip("+-").isdigit())


@st.composite
def bad_scan_args(draw: st.DrawFn) -> list[str]:
    """A scan command line with one bad option (the suite is valid, so the option must be what fails)."""
    suite = WORK / "valid.jsonl"
    kind = draw(st.integers(0, 14))
    args = ["--suite", str(suite), "--model", NO_MODEL, "--output", str(WORK / "out-args"), "-q"]
    if kind == 0:
        args += ["--batch-size", draw(st.one_of(not_int, st.integers(max_value=0).map(str)))]
    elif kind == 1:
        args += ["--limit", draw(st.one_of(not_int, st.integers(max_value=0).map(str)))]
    elif kind == 2:
        args += ["--dtype", draw(text.filter(lambda s: s not in ("fp32", "bf16", "fp16")))]
    elif kind == 3:
        args += ["--quantize", draw(text.filter(lambda s: s not in ("8bit", "4bit")))]
    elif kind == 4:
        args += ["--split", draw(text.filter(lambda s: s not in SPLITS))]
    elif kind == 5:
        args += ["--device", draw(text.filter(lambda s: s not in ("cpu", "mps", "cuda") and not s.startswith("cuda:")))]
    elif kind == 6:
        args += ["--device-map", draw(text.filter(lambda s: s not in ("auto", "balanced", "balanced_low_0",
                                                                      "sequential")))]
    elif kind == 7:
        args += ["--device-map", "auto", "--max-memory", draw(st.one_of(text, text.map(lambda s: "cpu=" + s),
                                                                         text.map(lambda s: s + "=1GiB")))]
    elif kind == 8:
        args += ["--max-memory", "cpu=1GiB"]  # a budget without --device-map
    elif kind == 9:
        args += ["--" + draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
            lambda s: "--" + s not in SCAN_OPTIONS))]
    elif kind == 10:
        args += [draw(st.sampled_from(["--batch-size", "--limit", "--dtype", "--suite", "--output", "--seed"]))]
    elif kind == 11:
        args += ["--data-dir", str(WORK / ("no-dir-" + draw(st.text(alphabet="abc", max_size=5))))]
    elif kind == 12:
        args[1] = draw(non_blank.filter(lambda s: "\x00" not in s and not Path(s).exists()))
    elif kind == 13:
        args += [draw(non_blank.filter(lambda s: not s.startswith("-")))]  # stray positional
    else:
        (WORK / "a-file").write_text("x")
        args[5] = str(WORK / "a-file")  # --output is a file
    return ["scan", *args]


def _valid_suite() -> None:
    (WORK / "valid.jsonl").write_text(json.dumps(valid_item(0)) + "\n")


_valid_suite()
# One unbounded pass through each command's code path first: the modules a command imports on its
# first call (rich, numpy, the scan machinery) are a one-time cost, not a case's.
_cli(["scan", "--suite", str(WORK / "valid.jsonl"), "--model", NO_MODEL, "-q", "-o", str(WORK / "warm")], bound=False)
_cli(["gate", "--policy", str(WORK / "no-policy.yaml"), "--report", str(RUN)], bound=False)


@given(argv=bad_scan_args())
@fuzz(600)
def test_bad_scan_arguments_one_line_exit_2(argv: list[str]) -> None:
    code, err = _cli(argv)
    assert_one_line_exit_2(code, err, argv)
    assert "unknown model" not in err, f"the bad option was not what failed: {argv}"


@given(argv=st.lists(st.text(min_size=1, max_size=10).filter(lambda s: s not in ("-h", "--help")), min_size=1,
                     max_size=4))
@fuzz(200)
def test_unknown_commands_one_line_exit_2(argv: list[str]) -> None:
    from mllm_audit.cli import app

    names = {c.name for c in app.registered_commands} | {c.callback.__name__ for c in app.registered_commands if
                                                          c.callback} | {g.name for g in app.registered_groups}
    if argv[0] in names or argv[0].startswith("-"):
        argv = ["no-such-command-" + argv[0], *argv[1:]]
    code, err = _cli(argv)
    assert_one_line_exit_2(code, err, argv)


def test_fuzz_workspace_is_temporary() -> None:
    assert str(WORK).startswith(tempfile.gettempdir()) and os.path.isdir(WORK)


# -------------------------------------------------------------------------------------- model cards


@st.composite
def bad_card(draw: st.DrawFn) -> Any:
    """A model card (or raw YAML text) that must be refused before any weights are looked for."""
    card: dict[str, Any] = {"family": "blip2", "weights": str(WORK / "no-weights"),
                            "templates": {"vqa": "Question: {prompt} Answer:"}}
    kind = draw(st.integers(0, 11))
    if kind == 0:
        del card[draw(st.sampled_from(["family", "weights"]))]
    elif kind == 1:
        card[draw(st.sampled_from(["family", "weights"]))] = draw(not_a_string.filter(lambda v: v is not None))
    elif kind == 2:
        card["templates"] = draw(st.one_of(st.lists(st.integers(), min_size=1, max_size=3), st.integers(), non_blank))
    elif kind == 3:
        card["templates"]["vqa"] = draw(st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.booleans()))
    elif kind == 4:
        field = draw(st.text(alphabet="abcxyz_0123.[]", min_size=1, max_size=8).filter(lambda s: s != "prompt"))
        card["templates"][draw(st.sampled_from(["vqa", "ic", "default"]))] = "Q: {prompt} {" + field + "}"
    elif kind == 5:
        card["templates"]["vqa"] = draw(st.sampled_from(["Q: {prompt", "Q: }", "{prompt!z}", "{prompt:d}",
                                                         "{prompt:>{width}}", "{}", "{0}", "{prompt} {"]))
    elif kind == 6:
        card["keep_fp32"] = draw(st.one_of(non_blank, st.integers(), st.lists(st.integers(), min_size=1, max_size=2)))
    elif kind == 7:
        card[draw(st.sampled_from(["edit", "generation", "extra"]))] = draw(st.one_of(
            non_blank, st.integers(), st.lists(st.integers(), min_size=1, max_size=2)))
    elif kind == 8:
        card[draw(st.text(alphabet="abcdefgh_", min_size=1, max_size=8).filter(
            lambda s: s not in ("name", "description", "family", "weights", "revision", "templates", "dtype",
                                "keep_fp32", "edit", "generation", "extra")))] = 1
    elif kind == 9:
        card[draw(st.sampled_from(["name", "description", "revision"]))] = draw(st.one_of(
            st.lists(st.integers(), min_size=1, max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                             min_size=1, max_size=2)))
    elif kind == 10:
        return draw(hostile_yaml("family: blip2\nweights: nowhere\n"))
    else:
        return "family: blip2\nweights: [unclosed\n  : " + draw(text) + "\n"
    return card


@given(card=bad_card())
@fuzz(400)
def test_bad_model_cards_one_line_exit_2(card: Any) -> None:
    path = WORK / "card.yaml"
    path.write_text(card if isinstance(card, str) else yaml.safe_dump(card, allow_unicode=True))
    argv = ["scan", "--model", str(path), "--suite", str(WORK / "valid.jsonl"), "--output", str(WORK / "out-card"),
            "-q"]
    code, err = _cli(argv)
    assert_one_line_exit_2(code, err, argv)


# ------------------------------------------------------------------------------------ editor states

LEARNED_EDITORS = ("mend", "ke", "serac")


@st.composite
def bad_state(draw: st.DrawFn) -> tuple[str, Any, Any]:
    """(editor, config.json content, state.safetensors content) with one damage; None = file absent."""
    from mllm_audit.editors import make_editor
    from mllm_audit.editors.learned.base import STATE_SCHEMA

    name = draw(st.sampled_from(LEARNED_EDITORS))
    defaults = dict(make_editor(name).defaults)  # type: ignore[attr-defined]
    config: Any = {"schema": STATE_SCHEMA, "editor": name, "scope": "text", "hparams": defaults, "model": "IDENTITY"}
    state: Any = ("tensors", {"w": draw(st.integers(1, 8))})
    kind = draw(st.integers(0, 14))
    if kind == 0:
        config = draw(st.one_of(st.binary(max_size=20), st.text(max_size=20).map(lambda t: "{" + t)))
    elif kind == 1:
        config = json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), non_blank, st.none())))
    elif kind == 2:
        config["schema"] = draw(st.one_of(text, st.integers(), st.none()))
    elif kind == 3:
        config["editor"] = draw(st.sampled_from([e for e in LEARNED_EDITORS if e != name] + ["ft-l", "", "x"]))
    elif kind == 4:
        config["hparams"] = draw(st.one_of(non_blank, st.integers(1), st.lists(st.integers(), min_size=1)))
    elif kind == 5:
        del defaults[draw(st.sampled_from(sorted(defaults)))]
    elif kind == 6:
        defaults[draw(st.sampled_from(sorted(defaults)))] = draw(st.one_of(
            non_blank, st.lists(st.integers(), max_size=2), st.none(), st.just(float("nan")), st.just(float("inf"))))
    elif kind == 7:
        ints = sorted(k for k, v in defaults.items() if type(v) is int)
        if ints:
            defaults[draw(st.sampled_from(ints))] = draw(st.one_of(st.integers(max_value=0),
                                                                   st.integers(min_value=2**16 + 1, max_value=2**70)))
        else:
            config["scope"] = "sideways"
    elif kind == 8:
        config["scope"] = draw(st.one_of(text.filter(lambda s: s not in ("text", "vision")), st.integers()))
    elif kind == 9:
        config["model"] = {"family": "blip2", "source": draw(non_blank), "name": "another"}
    elif kind == 10:
        state = ("bytes", draw(st.binary(max_size=64)))
    elif kind == 11:
        state = ("truncate", draw(st.integers(1, 200)))
    elif kind == 12:
        state = ("tensors", {draw(st.text(alphabet="abc.", min_size=1, max_size=6)): draw(st.integers(1, 8))})
    elif kind == 13:
        config = "[" * draw(st.integers(2000, 50_000))
    else:
        config, state = (None, state) if draw(st.booleans()) else (config, None)
    return name, config, state


@given(case=bad_state())
@fuzz(300)
def test_bad_editor_states_are_one_line_errors(case: tuple[str, Any, Any], tiny_adapter: Any) -> None:
    import shutil

    import pytest
    import torch
    from safetensors.torch import save_file

    from mllm_audit.editors import make_editor
    from mllm_audit.errors import AuditError

    name, config, state = case
    d = WORK / "state"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    if isinstance(config, dict):
        config = json.dumps({**config, "model": tiny_adapter.identity() if config["model"] == "IDENTITY"
                             else config["model"]})
    if config is not None:
        (d / "config.json").write_bytes(config if isinstance(config, bytes) else config.encode())
    if state is not None:
        kind, value = state
        if kind == "bytes":
            (d / "state.safetensors").write_bytes(value)
        else:
            tensors = value if kind == "tensors" else {"w": 8}
            save_file({k: torch.zeros(n) for k, n in tensors.items()}, str(d / "state.safetensors"))
            if kind == "truncate":
                raw = (d / "state.safetensors").read_bytes()
                (d / "state.safetensors").write_bytes(raw[: max(0, len(raw) - value)])

    def load() -> None:
        with pytest.raises(AuditError) as e:
            make_editor(name).load_state(d, tiny_adapter)  # type: ignore[attr-defined]
        assert len(str(e.value).splitlines()) == 1 and str(d) in str(e.value), str(e.value)

    bounded(load, (name, str(config)[:80], state))


def test_a_good_editor_state_loads(tiny_adapter: Any) -> None:
    """Negative control for the cases above: the state an editor saves loads back."""
    from mllm_audit.editors import make_editor

    for name in LEARNED_EDITORS:
        ed = make_editor(name)
        ed.setup(tiny_adapter, None)  # type: ignore[attr-defined]
        out = WORK / f"good-{name}"
        ed.save_state(out, tiny_adapter, {})  # type: ignore[attr-defined]
        make_editor(name).load_state(out, tiny_adapter)  # type: ignore[attr-defined]


def test_worst_case_within_bounds() -> None:
    """Printed for the record (run with -s): how many bounded cases ran and the worst of them."""
    print(f"\nfuzz: {WORST['cases']} bounded cases; slowest {WORST['seconds']:.2f} s CPU ({WORST['slowest']}); "
          f"largest {WORST['bytes'] / 2**20:.1f} MB ({WORST['largest']})")
    assert WORST["seconds"] <= MAX_SECONDS and WORST["bytes"] <= MAX_BYTES
