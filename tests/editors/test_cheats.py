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
  (FT-L 0.42, MEND 0.42, KE 0.40; 0.35 for MEND over 41 edits), so it is no bar there. Bars:
  Reliability >= 0.9; adjusted T-generality >= 0.5; adjusted V-generality >= 0.3; transfer ratio
  t <= 0.8; drift <= 0.7 nats. Measured: FT-L 1.00 / 1.00 / 0.69 / 0.67 / 0.43, MEND 1.00 / 1.00 /
  0.56 / 0.62 / 0.40, KE 1.00 / 1.00 / 0.69 / 0.67 / 0.62; no-op Reliability 0.00; exact-match
  adjusted T-generality 0.00; shift t 0.88 and drift 0.73; untrained KE adjusted V-generality 0.19.
  Untrained MEND passes every bar (1.00 / 1.00 / 0.69 / 0.62 / 0.61): on v3 MEND's meta-training
  buys nothing these metrics see (over 41 edits: drift 0.67 trained vs 0.59 untrained, easyedit
  M-locality 0.35 vs 0.32), so that case is a strict expected failure until a world plants what it
  should learn.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.metrics.edits import aggregate
from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix
from mllm_audit.toy.evaluate import write_untrained_state

N_EDITS = 16
BARS = {  # metric: (bound, "min" | "max"), per toy world
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
REAL = ("ft-l", "mend", "ke")
CHEATS = {"no-op": "serac-untrained", "exact-match": "serac", "shift": "control-shift",
          "untrained-mend": "mend-untrained", "untrained-ke": "ke-untrained"}


def failed_bars(m: dict, model: str = "toy") -> list[str]:
    out = []
    for key, (bound, way) in BARS[model].items():
        v = m[key]
        if v is None or (v < bound if way == "min" else v > bound):
            out.append(key)
    return out


def measure(model: str, names: tuple[str, ...], tmp: Path) -> dict[str, dict]:
    """Each editor or cheat of `names` on the model's first N_EDITS biased eval items (card states)."""
    toy = load_model(model)
    out = {}
    for name in names:
        editor = name.removesuffix("-untrained")
        state = write_untrained_state(editor, toy, tmp / name) if name.endswith("-untrained") else None
        res = run_fix(model=model, editor=editor, editor_state=state, limit=N_EDITS, output=tmp / f"fix-{name}",
                      adapter=toy)
        out[name] = aggregate([r for r in res.edits if r["meta"].get("planted")])
    return out


@pytest.fixture(scope="module", params=["toy", "toy-v3"])
def rows(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, dict]]:
    return request.param, measure(request.param, (*REAL, *CHEATS.values()), tmp_path_factory.mktemp("cheats"))


@pytest.mark.parametrize("editor", REAL)
def test_trained_editors_pass_every_bar(rows: tuple[str, dict[str, dict]], editor: str) -> None:
    model, got = rows
    assert failed_bars(got[editor], model) == [], {k: got[editor][k] for k in BARS[model]}


EXPECTED = {  # (model, cheat) -> a bar it fails
    ("toy", "no-op"): "reliability", ("toy", "exact-match"): "t_generality_adjusted",
    ("toy", "shift"): "m_locality_top10_easyedit", ("toy", "untrained-mend"): "m_locality_top10_easyedit",
    ("toy", "untrained-ke"): "reliability",
    ("toy-v3", "no-op"): "reliability", ("toy-v3", "exact-match"): "t_generality_adjusted",
    ("toy-v3", "shift"): "transfer_ratio", ("toy-v3", "untrained-mend"): None,
    ("toy-v3", "untrained-ke"): "v_generality_adjusted",
}


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_each_cheat_fails_a_bar(rows: tuple[str, dict[str, dict]], cheat: str) -> None:
    model, got = rows
    m = got[CHEATS[cheat]]
    expected = EXPECTED[(model, cheat)]
    if expected is None:  # see the module docstring: v3 does not plant what MEND's training buys
        assert failed_bars(m, model) == [], {k: m[k] for k in BARS[model]}  # it fails if that changes
        pytest.xfail(f"untrained MEND passes every bar on {model}")
    assert expected in failed_bars(m, model), {k: m[k] for k in BARS[model]}
    if cheat == "exact-match":  # Reliability alone cannot see it
        assert m["reliability"] >= 0.9 and m["t_generality_adjusted"] <= 0.1
