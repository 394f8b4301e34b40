"""Every cheat fails a bar that the trained editors pass (issue 26): one set of bars per toy world, asserted both ways.

Cheats: a no-op (untrained SERAC: routes nothing), an exact-match lookup (trained SERAC: its scope
does not recognise a paraphrase), an input-independent shift (control-shift), and untrained MEND and
KE states. Bars (planted eval edits, 16 edits):

- toy world v2 (`toy`): Reliability >= 0.9; T-generality with the unedited model's rate subtracted
  >= 0.5; easyedit M-locality (top-10) >= 0.45; neighbour drift <= 0.55 nats. Measured (this file's
  run): FT-L 1.00 / 1.00 / 0.47 / 0.37, MEND 1.00 / 1.00 / 0.49 / 0.48, KE 1.00 / 1.00 / 0.49 / 0.42;
  untrained SERAC Reliability 0.00; trained SERAC adjusted T-generality 0.00; control-shift
  M-locality 0.28, drift 0.70; untrained MEND M-locality 0.35, drift 0.61; untrained KE Reliability
  0.69. Untrained MEND is *better* than trained on the mirror spread (0.78 vs 1.28 nats).
- toy world v3 (`toy-v3`, its own MEND/KE/SERAC states): every editor's easyedit M-locality falls
  (FT-L 0.42, MEND 0.42, KE 0.40; 0.35 for MEND over 41 edits), so it is no bar there. Bars under
  `flip` (the paper's objective, the card states): Reliability >= 0.9; adjusted T-generality >= 0.5;
  adjusted V-generality >= 0.3; transfer ratio t <= 0.8; drift <= 0.7 nats. Measured: FT-L 1.00 /
  1.00 / 0.69 / 0.67 / 0.43, MEND 1.00 / 1.00 / 0.56 / 0.62 / 0.40, KE 1.00 / 1.00 / 0.69 / 0.67 /
  0.62; no-op Reliability 0.00; exact-match adjusted T-generality 0.00; shift t 0.88 and drift 0.73;
  untrained KE adjusted V-generality 0.19. Untrained MEND passes every `flip` bar (1.00 / 1.00 /
  0.69 / 0.62 / 0.61): under `flip` MEND's meta-training buys nothing these metrics see. The bar it
  fails is the one its training objective is for: under `neutral` (states `mend-neutral`,
  `ke-neutral`; the untrained states recorded under `neutral`), the balanced rate >= 0.3. Measured:
  FT-L 0.50, MEND 0.69, KE 0.38; untrained MEND 0.12, untrained KE 0.00; no-op, exact-match and
  shift 0.00 (no objective: their one run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.metrics.edits import aggregate
from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix
from mllm_audit.toy.evaluate import write_untrained_state
from mllm_audit.util.resources import adapters_dir

N_EDITS = 16
BARS = {  # metric: (bound, "min" | "max"), per toy world, measured under `flip`
    "toy": {
        "reliability": (0.9, "min"),
        "t_generality_adjusted": (0.5, "min"),
        "m_locality_top10_easyedit": (0.45, "min"),
        "neighbour_drift": (0.55, "max"),
    },
    "toy-v3": {
        "reliability": (0.9, "min"),
        "t_generality_adjusted": (0.5, "min"),
        "v_generality_adjusted": (0.3, "min"),
        "transfer_ratio": (0.8, "max"),
        "neighbour_drift": (0.7, "max"),
    },
}
# Bars measured under another objective (editors/objectives.py): the learned editors with their state
# trained under it, untrained states recorded under it; editors without an objective keep their one run.
OBJECTIVE_BARS = {"toy": {}, "toy-v3": {"neutral": {"balanced": (0.3, "min")}}}
REAL = ("ft-l", "mend", "ke")
CHEATS = {"no-op": "serac-untrained", "exact-match": "serac", "shift": "control-shift",
          "untrained-mend": "mend-untrained", "untrained-ke": "ke-untrained"}
WITH_OBJECTIVE = ("ft-l", "mend", "ke")


def failed_bars(got: dict[str, dict], name: str, model: str = "toy") -> list[str]:
    """Bars `name` fails: `key` under flip, `key@objective` under another objective."""
    out = []
    for objective, bars in (("flip", BARS[model]), *OBJECTIVE_BARS[model].items()):
        m = got[name] if objective == "flip" else got.get(f"{name}@{objective}", got[name])
        for key, (bound, way) in bars.items():
            v = m[key]
            if v is None or (v < bound if way == "min" else v > bound):
                out.append(key if objective == "flip" else f"{key}@{objective}")
    return out


def shown(got: dict[str, dict], name: str, model: str) -> dict[str, float]:
    out = {k: got[name][k] for k in BARS[model]}
    for objective, bars in OBJECTIVE_BARS[model].items():
        out |= {f"{k}@{objective}": got.get(f"{name}@{objective}", got[name])[k] for k in bars}
    return out


def measure(model: str, names: tuple[str, ...], tmp: Path) -> dict[str, dict]:
    """Each editor or cheat of `names` on the model's first N_EDITS biased eval items; `name@objective`
    under that objective (card states under flip, `<editor>-<objective>` states under another)."""
    toy = load_model(model)
    out = {}
    for key in names:
        name, _, objective = key.partition("@")
        editor = name.removesuffix("-untrained")
        if name.endswith("-untrained"):
            state = write_untrained_state(editor, toy, tmp / key.replace("@", "-"), objective or None)
        elif objective and editor != "ft-l":
            state = adapters_dir() / f"{model}-editors" / f"{editor}-{objective}"
        else:
            state = None
        res = run_fix(model=model, editor=editor, editor_state=state, limit=N_EDITS, objective=objective or None,
                      output=tmp / f"fix-{key.replace('@', '-')}", adapter=toy)
        out[key] = aggregate([r for r in res.edits if r["meta"].get("planted")])
    return out


@pytest.fixture(scope="module", params=["toy", "toy-v3"])
def rows(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, dict]]:
    model = request.param
    names = (*REAL, *CHEATS.values())
    extra = tuple(f"{n}@{o}" for o in OBJECTIVE_BARS[model] for n in names if n.removesuffix("-untrained")
                  in WITH_OBJECTIVE)
    return model, measure(model, names + extra, tmp_path_factory.mktemp("cheats"))


@pytest.mark.parametrize("editor", REAL)
def test_trained_editors_pass_every_bar(rows: tuple[str, dict[str, dict]], editor: str) -> None:
    model, got = rows
    assert failed_bars(got, editor, model) == [], shown(got, editor, model)


EXPECTED = {  # (model, cheat) -> a bar it fails
    ("toy", "no-op"): "reliability", ("toy", "exact-match"): "t_generality_adjusted",
    ("toy", "shift"): "m_locality_top10_easyedit", ("toy", "untrained-mend"): "m_locality_top10_easyedit",
    ("toy", "untrained-ke"): "reliability",
    ("toy-v3", "no-op"): "reliability", ("toy-v3", "exact-match"): "t_generality_adjusted",
    ("toy-v3", "shift"): "transfer_ratio", ("toy-v3", "untrained-mend"): "balanced@neutral",
    ("toy-v3", "untrained-ke"): "v_generality_adjusted",
}


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_each_cheat_fails_a_bar(rows: tuple[str, dict[str, dict]], cheat: str) -> None:
    model, got = rows
    name = CHEATS[cheat]
    assert EXPECTED[(model, cheat)] in failed_bars(got, name, model), shown(got, name, model)
    if cheat == "exact-match":  # Reliability alone cannot see it
        assert got[name]["reliability"] >= 0.9 and got[name]["t_generality_adjusted"] <= 0.1
    if cheat == "untrained-mend" and model == "toy-v3":  # only the objective's own bar sees it
        assert failed_bars(got, name, model) == ["balanced@neutral"], shown(got, name, model)
