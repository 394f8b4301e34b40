"""`suites frame`: a suite re-framed for one model, y_more := the answer its scan rated higher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllm_audit.suites.items import sample_margin
from mllm_audit.util.numbers import finite_or_none


def frame_for_model(samples: list[dict], items: list[Any]) -> list[dict]:
    """Re-frame items for one model's scan: y_more := the answer it rates higher on that image.

    This is the per-item framing of the debias-editing benchmark: the answer the model rates lower
    (`y_less`) becomes the edit target, so every item has one. Items without a sample are dropped;
    `meta.frame` records the run, the scanned margin and whether the answers were swapped.
    """
    by_id = {str(s["item_id"]): s for s in samples}
    out: list[dict] = []
    for it in items:
        d = dict(it.to_dict() if hasattr(it, "to_dict") else it)
        s = by_id.get(str(d["id"]))
        if s is None:
            continue
        m = sample_margin(s)
        swap = m < 0
        if swap:
            d["y_more"], d["y_less"] = d["y_less"], d["y_more"]
        meta = dict(d.get("meta") or {})
        meta["frame"] = {"run_id": s.get("run_id"), "margin": finite_or_none(m), "swapped": swap}
        d["meta"] = meta
        out.append(d)
    return out


FRAME_KIND = "suite-frame"


def frame_run(run_dir: Path, suite: str, output: Path, data_dir: Path | None = None,
              allow_outside_paths: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """`suites frame`: write the framed items to `output` plus a suite YAML beside it that finds the images.

    The YAML (`output` with suffix .yaml) points `images_dir` at the original suite's images (linked
    into `<out stem>-images/` beside it when they lie outside its folder, which a suite may not name)
    and drops `disparity`: after framing, a margin is no longer the favoured answer's log-odds.
    """
    import os

    from mllm_audit.errors import AuditError
    from mllm_audit.suites.builders.common import images_inside, write_items
    from mllm_audit.suites.items import load_suite
    from mllm_audit.util.files import read_jsonl

    run_dir, out = Path(run_dir), Path(output)
    if out.suffix != ".jsonl":
        raise AuditError(f"--output {out}: expected a .jsonl file name")
    from mllm_audit.util import outputs

    yaml_path = out.with_suffix(".yaml")  # the YAML carries the marker for both files (util/outputs.py)
    outputs.check_file(yaml_path, FRAME_KIND, "--output", overwrite)
    outputs.check_file(out, FRAME_KIND, "--output", overwrite, owner=yaml_path)
    samples = read_jsonl(run_dir / "samples.jsonl")
    loaded = load_suite(suite, data_dir=data_dir, allow_outside_paths=allow_outside_paths)
    framed = frame_for_model(samples, loaded.items)
    if not framed:
        raise AuditError(f"no sample in {run_dir} matches an item of suite {loaded.name!r}")
    try:
        images_dir = Path(os.path.relpath(loaded.images_root, out.parent.resolve())).as_posix()
    except ValueError:
        images_dir = loaded.images_root.as_posix()
    header: dict[str, Any] = {
        "name": out.stem,
        "description": f"{loaded.name} framed for run {run_dir.name}: y_more = its preferred answer",
        "source": f"mllm-audit suites frame {run_dir} --suite {suite}",
        "license": loaded.license,
        "items": out.name,
        "images_dir": images_dir,
    }
    if loaded.extra.get("group_by"):
        header["group_by"] = loaded.extra["group_by"]
    images_inside(out.parent, header, framed, f"{out.stem}-images")
    import yaml

    body = yaml.safe_dump(dict(header), sort_keys=False, allow_unicode=True)
    # The YAML first: its marker vouches for the items file, so a run killed between the two writes leaves
    # a file the next `--overwrite` may replace, never an unmarked JSONL the guard must refuse as the user's.
    outputs.write_text(yaml_path, outputs.marker_line(FRAME_KIND) + "\n" + body, FRAME_KIND)
    write_items(out, framed)
    n_swapped = sum(1 for d in framed if d["meta"]["frame"]["swapped"])
    return {
        "items": len(framed),
        "swapped": n_swapped,
        "without_sample": len(loaded.items) - len(framed),
        "out": str(out),
        "suite_yaml": str(yaml_path),
    }
