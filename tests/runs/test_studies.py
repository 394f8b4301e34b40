"""The paper's studies on the toy world: parity against the planted truth, the three tables, the run
folder and its report section, and parity's negative control (an input-independent shift)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mllm_audit.api import report
from mllm_audit.cli import run as cli
from mllm_audit.models import load_model
from mllm_audit.runs.studies import Engine, Setting, planted_spread, run_study, siblings, summarise
from mllm_audit.suites.items import load_suite

PLANTED_SPREAD = 2 * 1.734601  # clinic: +1.73 doctor log-odds for one colour, -1.73 for the other


@pytest.fixture(scope="module")
def toy():  # noqa: ANN201 - an Adapter
    return load_model("toy")


@pytest.fixture(scope="module")
def suite():  # noqa: ANN201 - a Suite
    return load_suite("toy")


def _item(suite, prefix: str):  # noqa: ANN001, ANN202
    return next(it for it in suite.items if it.id.startswith(prefix))


def test_parity_siblings_match_the_planted_truth(suite) -> None:  # noqa: ANN001
    item = _item(suite, "toy/clinic/orange/4/vqa")
    sibs = siblings(item, [it for it in suite.items if it.split == "eval"])
    assert {s.group for s in sibs} == {"orange", "black"} and len(sibs) == 8
    assert planted_spread(sibs) == pytest.approx(PLANTED_SPREAD)
    control = _item(suite, "toy/kitchen/orange/4/vqa")  # a control scenario: nothing planted
    assert planted_spread(siblings(control, [it for it in suite.items if it.split == "eval"])) == 0.0


class _ShiftEdited:
    """Negative control: add `c` to the y_less token logit wherever y_less and y_more first differ,
    on every image alike. The answer flips, the dependence on the group stays."""

    touched: list[str] = []

    def __init__(self, adapter, less: list[int], more: list[int], c: float) -> None:  # noqa: ANN001
        from mllm_audit.scoring.contract import next_token_logprobs

        self.adapter, self.c = adapter, c
        self.j = next(i for i, (a, b) in enumerate(zip(less, more, strict=False)) if a != b)
        self.tok = less[self.j]
        self.transform = lambda r: r
        self._score = next_token_logprobs

    def score(self, reqs, load, bs):  # noqa: ANN001, ANN201
        out = []
        for d in self._score(self.adapter, reqs, load, batch_size=bs):
            if d.shape[0] > self.j:
                d = d.clone()
                d[self.j, self.tok] += self.c
                d[self.j] = torch.log_softmax(d[self.j], -1)
            out.append(d)
        return out

    def restore(self) -> None:
        pass

    def delta(self) -> dict:
        return {}


def test_parity_drops_for_a_real_edit_but_not_for_a_uniform_shift(toy, suite) -> None:  # noqa: ANN001
    from mllm_audit.editors import make_editor
    from mllm_audit.editors.base import EditContext
    from mllm_audit.runs.score import image_loader
    from mllm_audit.scoring.contract import continuation_text

    items = [_item(suite, f"toy/clinic/orange/{i}/vqa") for i in (4, 5)]
    engine = Engine(toy, suite, 16)
    ctx = EditContext(load_image=image_loader(suite))
    ft = summarise(engine.run(Setting({}, make_editor("ft-l"), ctx, [[it] for it in items])))

    class Shift:
        name = "shift"

        def apply(self, adapter, reqs, ctx):  # noqa: ANN001, ANN201
            r = reqs[0]
            return _ShiftEdited(adapter, adapter.continuation_ids(continuation_text(r.target)),
                                adapter.continuation_ids(continuation_text(r.avoid)), 6.0)

    shift = summarise(engine.run(Setting({}, Shift(), ctx, [[it] for it in items])))  # type: ignore[arg-type]
    # Both flip the edited answers ...
    assert ft["reliability"] == 1.0 and shift["reliability"] == 1.0
    # ... the toy model's parity before is near the planted spread (measured 3.34 vs 3.47) ...
    assert abs(ft["parity_before"] - PLANTED_SPREAD) < 0.5
    # ... FT-L removes most of the group dependence (measured 3.34 -> 1.3), the shift none of it.
    assert ft["parity_after"] < 0.6 * ft["parity_before"]
    assert shift["parity_after"] == pytest.approx(shift["parity_before"], abs=1e-4)


def test_batch_study_writes_its_run_folder_and_report(toy, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "batch"
    res = run_study("batch", editors=["ft-l"], limit=3, sizes=[1, 3], output=out, adapter=toy)
    table = res.results["table"]
    assert [(r["editor"], r["batch"]) for r in table] == [("ft-l", 1), ("ft-l", 3)]
    assert table[0]["reliability"] == 1.0  # one edit at a time: every item flips
    assert all(r["n"] == 3 for r in table)
    saved = json.loads((out / "results.json").read_text())
    assert saved["complete"] and saved["command"] == "study" and saved["study"] == "batch"
    lines = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and [r["chunk_size"] for r in lines] == [1, 1, 1, 3, 3, 3]
    assert all(r["parity_after"] is not None for r in lines)
    (pair,) = saved["paired"]  # batch 3 against batch 1 on the same three edits, clusters stated
    assert (pair["a"], pair["b"], saved["paired_cluster"]) == ("batch 1", "batch 3", "image")
    assert pair["diffs"]["reliability"]["n"] == 3
    html = report(out, html=out / "report.html").path.read_text()  # the study's section in the run report
    assert "Study: batch" in html and "parity pre" in html
    # Nothing the user has is overwritten.
    with pytest.raises(Exception, match="already holds a run"):
        run_study("batch", editors=["ft-l"], limit=2, sizes=[1], output=out, adapter=toy)


def test_modules_study_compares_language_and_vision(toy, tmp_path: Path) -> None:  # noqa: ANN001
    res = run_study("modules", editors=["ft"], limit=2, output=tmp_path / "m", adapter=toy)
    rows = {r["module"]: r for r in res.results["table"]}
    assert set(rows) == {"language", "vision"} and rows["vision"]["edited_as"] == "ft-v"
    assert rows["language"]["reliability"] == 1.0
    html = report(tmp_path / "m", html=tmp_path / "m" / "report.html").path.read_text()
    assert html.count("data:image/png;base64") == 1  # Figure 4's plot


@pytest.mark.parametrize("protocol", ["transfer", "fit"])
def test_cross_bias_table_has_every_pair_of_types(toy, tmp_path: Path, protocol: str) -> None:  # noqa: ANN001
    res = run_study("cross-bias", editors=["ft-l"], limit=1, protocol=protocol, output=tmp_path / protocol,
                    adapter=toy)
    table = res.results["table"]
    types = ["gender", "race", "age", "profession"]  # toy world v2
    assert sorted((r["edit_type"], r["eval_type"]) for r in table) == sorted((a, b) for a in types for b in types)
    diag = [r["reliability"] for r in table if r["edit_type"] == r["eval_type"]]
    assert all(v == 1.0 for v in diag)
    if protocol == "transfer":  # editing one type's items leaves another type's items biased
        off = [r["reliability"] for r in table if r["edit_type"] != r["eval_type"]]
        assert sum(off) / len(off) < 0.5
        # ... paired against the in-type edit on the same measured items: 4 types x 3 other sources
        pairs = res.results["paired"]
        assert len(pairs) == 12 and res.results["paired_cluster"] == "image"
        assert all(p["diffs"]["reliability"]["diff"] <= 0 and p["diffs"]["reliability"]["n"] == 1 for p in pairs)
    else:  # FT fits nothing: its other-source rows repeat the first, so there is nothing to pair
        assert res.results["paired"] == []


def test_study_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert cli(["study", "nonsense", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown study" in err[0]
    assert cli(["study", "batch", "--sizes", "1,x"]) == 2
    assert cli(["study", "modules", "--editors", "ike"]) == 2
    assert "unknown editor 'ike'" in capsys.readouterr().err
    assert cli(["study", "batch", "--cluster", "scene"]) == 2
    assert "--cluster must be one of image, scenario" in capsys.readouterr().err
