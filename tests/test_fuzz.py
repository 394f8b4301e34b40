"""Property-based: generated bad suite files, policy files and command lines always get one line and exit 2.

Every input here is bad by construction (a valid base with one guaranteed-invalid change), so the
only acceptable answer is `mllm-audit: error: <one line>` on stderr and exit code 2: never a
traceback, never an "internal error", never a model load. The scan cases pass a model that does not
exist, so a suite that slipped through as valid would show up as "unknown model" and fail the test.
About 4,000 examples in all; no model is loaded.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mllm_audit.cli import run
from mllm_audit.gate import METRICS
from mllm_audit.report import RESULTS_SCHEMA, SAMPLE_SCHEMA, atomic_write_json
from mllm_audit.suites import SPLITS, TASKS


def fuzz(n: int) -> settings:
    """n examples, fixed seed (reproducible in CI), no example database written into the tree."""
    return settings(
        max_examples=n, deadline=None, database=None, derandomize=True,
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


def _cli(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = run(argv)
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


@given(
    kind=st.integers(0, 5),
    junk=st.dictionaries(st.sampled_from(["name", "description", "license", "source", "group_by", "images_dir"]),
                         st.one_of(text, st.integers(), st.none()), max_size=4),
    raw=st.text(max_size=30),
)
@fuzz(150)
def test_bad_suite_yaml_one_line_exit_2(kind: int, junk: dict[str, Any], raw: str) -> None:
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
    path = WORK / "suite.yaml"
    if kind == 4:
        path.write_text("items: [unclosed\n  - " + raw + "\n: :\n")
    elif kind == 5:
        path.write_bytes(b"items: \xff\xfe" + raw.encode())
    else:
        path.write_text(yaml.safe_dump(header, allow_unicode=True))
    argv = ["scan", "--suite", str(path), "--model", NO_MODEL, "--output", str(WORK / "out"), "-q"]
    code, err = _cli(argv)
    assert_one_line_exit_2(code, err, argv)
    assert "unknown model" not in err


# ------------------------------------------------------------------------------------ policy files


def _run_folder() -> Path:
    """A complete run in the real format with rows 'gender' and 'all' (suite 'toy')."""
    from mllm_audit.metrics import bias_summary, sample_record
    from mllm_audit.suites import Item

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
    check: dict[str, Any] = {"name": "c", "metric": "pct_biased", "max": 0.6}
    policy: dict[str, Any] = {"suite": "toy", "checks": [check]}
    kind = draw(st.integers(0, 19))
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
    else:
        return b"checks:\n  - \xff\xfe" + draw(st.binary(max_size=10))
    return policy


@given(policy=bad_policy())
@fuzz(700)
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
