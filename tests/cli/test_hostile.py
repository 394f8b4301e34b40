"""Hostile and careless input (issue 19): one test per case, each failing on the code before the fix.

Every refusal is `mllm-audit: error: <one line naming the culprit>` with exit 2, before any model
loads where that is possible; every good case beside it (the negative control) still works.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from mllm_audit.cli import run
from mllm_audit.errors import AuditError

NO_MODEL = "/nonexistent/never-loaded-model"


def cli(argv: list[Any]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def refused(argv: list[Any], *needles: str) -> str:
    """The command exits 2 with one line holding every needle (and no 'internal error')."""
    code, _, err = cli(argv)
    # Progress lines (model load, the run folder) may come first; the error is one line, the last.
    lines = [x for x in err.strip().splitlines() if x.startswith("mllm-audit:")]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("mllm-audit: error: "), err
    assert err.strip().splitlines()[-1] == lines[0], err
    assert "internal error" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return lines[0]


def items_of(tiny_suite: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in tiny_suite.read_text().splitlines()]


def write_items(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def with_first(tiny_suite: Path, name: str = "edited.jsonl", **change: Any) -> Path:
    items = items_of(tiny_suite)
    items[0].update(change)
    return write_items(tiny_suite.parent / name, items)


# ------------------------------------------------------------------------- paths out of the suite


def _suite_yaml(folder: Path, header: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(header))
    return path


def test_images_dir_climbing_out_is_refused(tmp_path: Path, tiny_suite: Path) -> None:
    # images_dir climbs to / and the item path climbs back down to the real images: the old code scanned it.
    up = "../" * (len(tmp_path.parts) + 2)
    items = items_of(tiny_suite)
    for it in items:
        it["image"] = str(tiny_suite.parent / it["image"]).lstrip("/")
    suite_dir = tmp_path / "evil"
    write_items(suite_dir / "items.jsonl", items) if suite_dir.mkdir() is None else None
    bad = _suite_yaml(suite_dir, {"name": "evil", "items": "items.jsonl", "images_dir": up})
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-o", tmp_path / "r", "-q"], "'images_dir'",
            "escapes the suite folder", "--allow-outside-paths")
    # the same climb is allowed when asked for (and then fails later, on the model that does not exist)
    code, _, err = cli(["scan", "--suite", bad, "--model", NO_MODEL, "-o", tmp_path / "r", "-q",
                        "--allow-outside-paths"])
    assert code == 2 and "escapes" not in err and "never-loaded-model" in err


def test_items_outside_the_suite_folder_are_refused(tmp_path: Path, tiny_suite: Path) -> None:
    bad = _suite_yaml(tmp_path / "evil", {"name": "evil", "items": f"../{tiny_suite.parent.name}/{tiny_suite.name}"})
    bad.parent.joinpath("x").touch()
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-q"], "'items'", "escapes the suite folder")
    # negative control: the suite YAML beside its items loads (and fails on the model only)
    good = _suite_yaml(tiny_suite.parent, {"name": "good", "items": tiny_suite.name})
    code, _, err = cli(["scan", "--suite", good, "--model", NO_MODEL, "-o", tmp_path / "r", "-q"])
    assert code == 2 and "never-loaded-model" in err, err


def test_data_dir_is_an_allowed_root(tmp_path: Path, tiny_suite: Path) -> None:
    suite_dir = tmp_path / "suite-only"
    suite_dir.mkdir()
    shutil.copy(tiny_suite, suite_dir / "items.jsonl")
    code, _, err = cli(["scan", "--suite", suite_dir / "items.jsonl", "--data-dir", tiny_suite.parent,
                        "--model", NO_MODEL, "-o", tmp_path / "r", "-q"])
    assert code == 2 and "never-loaded-model" in err, err


def test_rephrase_and_locality_images_are_contained(tmp_path: Path, tiny_suite: Path) -> None:
    bad = with_first(tiny_suite, rephrase_image="../../../etc/hostname")
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-o", tmp_path / "r", "-q"], "escapes")
    bad = with_first(tiny_suite, "b.jsonl", m_loc_image="/etc/hostname", m_loc_prompt="q", m_loc_answer="a")
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-o", tmp_path / "r", "-q"], "is absolute")


def test_nul_byte_in_an_image_path(tmp_path: Path, tiny_suite: Path) -> None:
    bad = with_first(tiny_suite, image="images/img0.png\u0000.txt")
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-o", tmp_path / "r", "-q"], "NUL byte")


def test_symlink_loop(tmp_path: Path, tiny_suite: Path) -> None:
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    refused(["scan", "--suite", loop, "--model", NO_MODEL, "-q"], "symlink loop")
    (tiny_suite.parent / "images" / "loop.png").symlink_to(tiny_suite.parent / "images" / "loop.png")
    bad = with_first(tiny_suite, image="images/loop.png")
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-o", tmp_path / "r", "-q"], "loop.png")


def test_file_name_too_long(tmp_path: Path, tiny_suite: Path) -> None:
    refused(["scan", "--suite", tmp_path / ("y" * 300 + ".jsonl"), "--model", NO_MODEL, "-q"], "File name too long")
    refused(["scan", "--suite", tiny_suite, "--model", NO_MODEL, "-q", "-o", tmp_path / ("x" * 300)],
            "File name too long")


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs /sys, where nobody may create folders")
def test_read_only_folder(tmp_path: Path) -> None:
    from mllm_audit.util.resources import suites_dir

    src = suites_dir() / "pairs-vqa"
    refused(["suites", "build", "pairs", "--src", src, "--output", "/sys/mllm-ro/p"], "/sys/mllm-ro")


def test_fifo_and_folder_are_not_regular_files(tmp_path: Path, tiny_suite: Path) -> None:
    from mllm_audit.suites.items import load_image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(AuditError, match="not a regular file"):
        load_image(fifo)  # the old code opened it and blocked forever
    with pytest.raises(AuditError, match="not a regular file"):
        load_image(tmp_path)
    (tiny_suite.parent / "images" / "dir.png").mkdir()
    bad = with_first(tiny_suite, image="images/dir.png")
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-o", tmp_path / "r", "-q"], "not a regular file")
    os.mkfifo(tmp_path / "items-fifo.jsonl")
    refused(["scan", "--suite", tmp_path / "items-fifo.jsonl", "--model", NO_MODEL, "-q"], "not a regular file")


# ------------------------------------------------------------------------------------ bounded cost


def test_huge_single_line_prompt_is_refused_before_work(tmp_path: Path, tiny_suite: Path) -> None:
    bad = with_first(tiny_suite, prompt="a " * 1_500_000)  # 3 MB on one line (the was 50 MB)
    t0 = time.perf_counter()
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-q"], f"{bad}:1", "1048576-character limit")
    assert time.perf_counter() - t0 < 5.0  # the bad-input bound (issue 19): seconds, not minutes
    long_field = with_first(tiny_suite, "b.jsonl", prompt="b" * 30_000)  # under the line cap, over the field cap
    refused(["scan", "--suite", long_field, "--model", NO_MODEL, "-q"], "'prompt'", "20000 limit")


def test_prompt_length_is_checked_before_tokenizing() -> None:
    from mllm_audit.scoring.contract import Request, tokenize

    class NeverTokenize:
        max_positions = 256

        def prompt_ids(self, *a: Any, **k: Any) -> list[int]:
            raise AssertionError("tokenized a prompt that is over the character limit")

    with pytest.raises(AuditError, match="over the 20000 limit"):
        tokenize(NeverTokenize(), Request(prompt="x" * 20_001, continuation="a"))  # type: ignore[arg-type]


def test_items_file_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_suite: Path) -> None:
    import mllm_audit.suites.items as suites

    monkeypatch.setattr(suites, "MAX_ITEMS_FILE_BYTES", 100)
    refused(["scan", "--suite", tiny_suite, "--model", NO_MODEL, "-q"], "100-byte limit")


def _policy(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text if text is not None else "checks:\n  - {name: c, metric: pct_biased, max: 100}\n")
    return path


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines)


def test_policy_alias_bomb_is_refused_at_once(tmp_path: Path, fake_run: Path) -> None:
    text = _alias_bomb() + "\nchecks:\n  - {name: *a9, metric: pct_biased, max: 100}\n"
    t0 = time.perf_counter()
    refused(["gate", "--policy", _policy(tmp_path, text), "--report", fake_run], "policy.yaml:2", "aliases")
    assert time.perf_counter() - t0 < 5.0  # the bad-input bound (issue 19): seconds, not minutes
    code, _, _ = cli(["gate", "--policy", _policy(tmp_path), "--report", fake_run])
    assert code == 0


def test_suite_yaml_alias_and_depth_and_duplicates(tmp_path: Path, tiny_suite: Path) -> None:
    base = f"items: {tiny_suite.name}\n"
    for text, needle in ((_alias_bomb(3) + "\n" + base, "aliases"), (base + "items: other.jsonl\n", "appears twice"),
                         (base + "deep: " + "[" * 200 + "]" * 200 + "\n", "nested deeper"),
                         (base + "description: " + "d" * 20_000 + "\n", "10000-character limit"),
                         (base + "when: 2001-13-45\n", "month must be in 1..12")):
        path = tiny_suite.parent / "s.yaml"
        path.write_text(text)
        refused(["scan", "--suite", path, "--model", NO_MODEL, "-q"], "s.yaml:", needle)


def test_policy_key_written_twice(tmp_path: Path, fake_run: Path) -> None:
    text = "checks:\n  - name: c\n    metric: pct_biased\n    max: 10\n    max: 100\n"
    refused(["gate", "--policy", _policy(tmp_path, text), "--report", fake_run], "policy.yaml:5", "'max' appears twice")


def test_deeply_nested_inputs(tmp_path: Path, tiny_suite: Path, fake_run: Path) -> None:
    items = items_of(tiny_suite)
    line = json.dumps(items[0])[:-1] + ', "meta": ' + "[" * 50_000 + "]" * 50_000 + "}"
    bad = tiny_suite.parent / "deep.jsonl"
    bad.write_text(line + "\n")
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-q"], f"{bad}:1", "nested too deeply")
    meta = {"k": 1}
    for _ in range(40):
        meta = {"k": meta}
    refused(["scan", "--suite", with_first(tiny_suite, meta=meta), "--model", NO_MODEL, "-q"], "'meta'", "nested")
    (fake_run / "results.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(["report", fake_run], "results.json", "nested too deeply")


# ------------------------------------------------------------------------- markup and terminal codes


@pytest.fixture()
def fake_run(tmp_path: Path) -> Path:
    """A complete run folder in the real format (no model involved)."""
    from mllm_audit.metrics.bias import bias_summary, sample_record
    from mllm_audit.runs.writer import RESULTS_SCHEMA, SAMPLE_SCHEMA
    from mllm_audit.suites.items import Item
    from mllm_audit.util.files import atomic_write_json

    folder = tmp_path / "fake-run"
    folder.mkdir()
    samples = [sample_record("r", Item(id=f"g{i}", task="vqa", bias_type="gender", image=f"{i}.png", prompt="q",
                                       y_more="a", y_less="b"), -3.0 + (i % 2), 1, -3.0, 1, SAMPLE_SCHEMA)
               for i in range(6)]
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    atomic_write_json(folder / "results.json", {
        "schema": RESULTS_SCHEMA, "command": "scan", "run_id": "r", "complete": True, "model": {"name": "tiny"},
        "suite": {"name": "toy", "content_hash": "x", "n_items": 6}, "group_by": None, "summary": bias_summary(samples),
    })
    return folder


HOSTILE = {
    "markup_error": "gender[/]",
    "styling": "[bold red]ALL CLEAR[/] toy",
    "clear_screen": "gender\x1b[2J",
    "osc_title": "gender\x1b]0;pwned\x07",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_suite_text_is_not_markup_or_terminal_codes(case: str, tmp_path: Path, tiny_blip2_dir: Path,
                                                    tiny_suite: Path) -> None:
    text = HOSTILE[case]
    items = items_of(tiny_suite)
    for it in items:
        it["bias_type"] = text
    write_items(tiny_suite, items)
    suite = _suite_yaml(tiny_suite.parent, {"name": text, "items": tiny_suite.name})
    code, out, err = cli(["scan", "--suite", suite, "--model", tiny_blip2_dir, "-o", tmp_path / "r", "-q"])
    assert code == 0, err
    assert "\x1b" not in out + err and "\x07" not in out + err
    from mllm_audit.util.text import shown

    assert shown(text, markup=False) in out  # printed literally: brackets and escapes visible
    code, out, err = cli(["report", tmp_path / "r"])
    assert code == 0 and "\x1b" not in out and shown(text, markup=False) in out


def test_error_lines_do_not_carry_terminal_codes(tmp_path: Path, tiny_suite: Path) -> None:
    line = refused(["scan", "--suite", tiny_suite, "--data-dir", tmp_path / "no\x1b[2Jdir", "--model", NO_MODEL, "-q"],
                   "\\x1b[2J")
    assert "\x1b" not in line


def test_shown_negative_control() -> None:
    from rich.console import Console

    from mllm_audit.util.text import shown

    raw, safe = io.StringIO(), io.StringIO()
    Console(file=raw, force_terminal=True, highlight=False).print("[bold red]ALL CLEAR[/]")
    Console(file=safe, force_terminal=True, highlight=False).print(shown("[bold red]ALL CLEAR[/]"))
    assert "[bold red]" not in raw.getvalue() and "\x1b[" in raw.getvalue()  # unescaped: styled
    assert "[bold red]ALL CLEAR[/]" in safe.getvalue()  # escaped: literal
    assert shown("a\x1b[2Jb\u202e") == "a\\x1b[2Jb\\u202e"


def test_junit_with_a_control_character_is_well_formed(tmp_path: Path, fake_run: Path) -> None:
    policy = _policy(tmp_path, yaml.safe_dump({"checks": [{"name": "bias\x1b ok\x01", "metric": "pct_biased",
                                                           "max": 100}]}))
    junit = tmp_path / "gate.xml"
    code, out, err = cli(["gate", "--policy", policy, "--report", fake_run, "--junit", junit])
    assert code == 0, err
    root = ET.parse(junit).getroot()  # raised "not well-formed" before
    assert root.find(".//testcase").get("name") == "bias\\x1b ok\\x01"
    assert "\x1b" not in out


def test_html_report_drops_what_xml_forbids(tmp_path: Path, fake_run: Path) -> None:
    pytest.importorskip("matplotlib")
    res = json.loads((fake_run / "results.json").read_text())
    res["model"]["name"] = "tiny\x01\x1b"
    (fake_run / "results.json").write_text(json.dumps(res))
    code, _, err = cli(["report", fake_run, "--html", tmp_path / "r.html"])
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert "\x01" not in html and "\x1b" not in html and "tiny\\x01\\x1b" in html


def test_report_html_without_matplotlib_names_the_extra(fake_run: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    refused(["report", fake_run, "--html", tmp_path / "r.html"], "mllm-audit[report]")
    assert not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------------------------ numeric options


@pytest.mark.parametrize("argv", [
    ["fix", "--limit", "-1"], ["fix", "--limit", "0"], ["fix", "--batch-size", "0"], ["fix", "--batch-size", "-3"],
    ["fix", "--batch-edits", "0"], ["fix", "--seed", "-1"], ["gen-scan", "-n", "0"], ["gen-scan", "--batch-size", "0"],
    ["gen-scan", "--limit", "-2"], ["scan", "--seed", str(2**40)], ["train-editor", "--output", "x", "--steps", "0"],
    ["train-editor", "--output", "x", "--seed", "-4"], ["toy", "train", "--seed", "-1", "--output", "x"],
])
def test_numeric_options_checked_before_loading(argv: list[str], tmp_path: Path) -> None:
    option = next(a for a in argv if a.startswith("-") and a not in ("--output",))
    name = {"-n": "--images-per-prompt"}.get(option, option)
    line = refused([*argv[:1] + argv[1:], "--model", NO_MODEL] if argv[0] != "toy" else argv, name)
    assert "never-loaded-model" not in line


def test_numeric_checks_are_shared() -> None:
    from mllm_audit.util.numbers import at_least, check_counts

    check_counts({"--limit": None, "--batch-size": 1}, seed=0)  # negative control: good values pass
    for bad in (0, -1, True, 1.5):
        with pytest.raises(AuditError, match="--limit"):
            at_least("--limit", bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ suite content


def test_answers_equal_after_the_continuation_rule(tmp_path: Path, tiny_suite: Path) -> None:
    bad = with_first(tiny_suite, y_more="doctor", y_less=" doctor")
    refused(["scan", "--suite", bad, "--model", NO_MODEL, "-q"], "'it0-0'", "same continuation")
    ok = with_first(tiny_suite, "ok.jsonl", y_more="doctor", y_less="doctors")
    code, _, err = cli(["scan", "--suite", ok, "--model", NO_MODEL, "-o", tmp_path / "r", "-q"])
    assert "never-loaded-model" in err


def test_image_placeholder_typed_in_a_prompt(tmp_path: Path, tiny_blip2_dir: Path, tiny_suite: Path) -> None:
    bad = with_first(tiny_suite, prompt="look <image> here")
    out = tmp_path / "r"
    refused(["scan", "--suite", bad, "--model", tiny_blip2_dir, "-o", out, "-q"], "image placeholder",
            "look <image> here")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    from PIL import Image

    from mllm_audit.suites.items import load_image

    img = Image.new("RGB", (40, 20), (200, 10, 10))
    img.paste((10, 10, 200), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    img.save(tmp_path / "plain.jpg", quality=95)
    assert load_image(tmp_path / "plain.jpg").size == (40, 20)  # negative control: no tag, no turn
    turned = load_image(tmp_path / "rot.jpg")
    assert turned.size == (20, 40)
    r, g, b = turned.getpixel((10, 2))
    assert b > 150 and r < 80  # the left strip is now on top


# ------------------------------------------------------------------------------ weights, states, cards


def _model_copy(tiny_blip2_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_blip2_dir, tmp_path / "model"))


def test_nan_weights_name_the_weight(tmp_path: Path, tiny_blip2_dir: Path, tiny_suite: Path) -> None:
    from safetensors.torch import load_file, save_file

    m = _model_copy(tiny_blip2_dir, tmp_path)
    sd = load_file(m / "model.safetensors")
    key = next(k for k in sd if k.endswith("embed_tokens.weight"))
    sd[key].fill_(float("nan"))
    save_file(sd, m / "model.safetensors", metadata={"format": "pt"})
    refused(["scan", "--suite", tiny_suite, "--model", m, "-o", tmp_path / "r", "-q"], "it0-0", key, "NaN")
    results = tmp_path / "r" / "results.json"
    assert not results.exists() or json.loads(results.read_text())["complete"] is False


def test_weight_of_the_wrong_shape(tmp_path: Path, tiny_blip2_dir: Path, tiny_suite: Path) -> None:
    from safetensors.torch import load_file, save_file

    m = _model_copy(tiny_blip2_dir, tmp_path)
    sd = load_file(m / "model.safetensors")
    key = next(k for k in sd if k.endswith("fc1.weight"))
    sd[key] = sd[key][:-1].clone()
    save_file(sd, m / "model.safetensors", metadata={"format": "pt"})
    refused(["scan", "--suite", tiny_suite, "--model", m, "-o", tmp_path / "r", "-q"], key, "shape")


@pytest.mark.parametrize("damage", ["truncated", "bad_header", "huge_header_length"])
def test_damaged_safetensors(damage: str, tmp_path: Path, tiny_blip2_dir: Path, tiny_suite: Path) -> None:
    m = _model_copy(tiny_blip2_dir, tmp_path)
    f = m / "model.safetensors"
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    if damage == "truncated":
        f.write_bytes(raw[: len(raw) // 2])
    elif damage == "bad_header":
        f.write_bytes(raw[:8] + b"{" + b"x" * (n - 1) + raw[8 + n:])
    else:
        f.write_bytes((len(raw) * 2).to_bytes(8, "little") + raw[8:])
    refused(["scan", "--suite", tiny_suite, "--model", m, "-o", tmp_path / "r", "-q"], str(f))


@pytest.mark.parametrize("template", ["Q: {prompt} {x} A:", "Q: {prompt} {", "Q: {0}"])
def test_card_template_with_an_unknown_field(template: str, tmp_path: Path, tiny_blip2_dir: Path,
                                             tiny_suite: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(yaml.safe_dump({"family": "blip2", "weights": str(tiny_blip2_dir), "templates": {"vqa": template}}))
    refused(["scan", "--suite", tiny_suite, "--model", card, "-o", tmp_path / "r", "-q"], str(card), "'vqa'")


def test_rescore_over_a_hand_edited_score(tmp_path: Path, fake_run: Path) -> None:
    path = fake_run / "samples.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["logp_more"] = "-1.5"
    path.write_text("\n".join([*lines[:2], json.dumps(rec), *lines[3:]]) + "\n")
    refused(["rescore", fake_run], "samples.jsonl:3", "'logp_more'", "finite number")


@pytest.mark.parametrize("damage", ["config_deep", "config_a_list", "hparams_a_string", "rank_huge", "state_junk",
                                    "state_truncated"])
def test_corrupt_editor_state(damage: str, tmp_path: Path, tiny_adapter: Any) -> None:
    import torch
    from safetensors.torch import save_file

    from mllm_audit.editors.learned.base import STATE_SCHEMA
    from mllm_audit.editors.learned.mend import MEND

    d = tmp_path / "state"
    d.mkdir()
    config: Any = {"schema": STATE_SCHEMA, "editor": "mend", "scope": "text", "hparams": dict(MEND.defaults),
                   "model": tiny_adapter.identity()}
    save_file({"w": torch.zeros(4)}, d / "state.safetensors")
    if damage == "config_deep":
        config = "[" * 100_000
    elif damage == "config_a_list":
        config = [1, 2]
    elif damage == "hparams_a_string":
        config["hparams"] = "lr=1"
    elif damage == "rank_huge":
        config["hparams"]["rank"] = 10**9
    elif damage == "state_junk":
        (d / "state.safetensors").write_bytes(b"junk")
    else:
        raw = (d / "state.safetensors").read_bytes()
        (d / "state.safetensors").write_bytes(raw[:-8])
    (d / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    from mllm_audit.editors import make_editor

    with pytest.raises(AuditError, match="editor state|weights file") as e:
        make_editor("mend").load_state(d, tiny_adapter)  # type: ignore[attr-defined]
    assert str(d) in str(e.value)
