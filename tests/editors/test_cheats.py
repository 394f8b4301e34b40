"""Every cheat fails a bar that the trained editors pass (issue 26): one set of bars, asserted both ways.

Cheats: a no-op (untrained SERAC: routes nothing), an exact-match lookup (trained SERAC: its scope
does not recognise a paraphrase), an input-independent shift (control-shift), and untrained MEND and
KE states. Bars (planted eval edits, toy world v2, 16 edits): Reliability >= 0.9; T-generality with
the unedited model's rate subtracted >= 0.5; easyedit M-locality (top-10) >= 0.45; neighbour drift
<= 0.55 nats. Measured (this file's run): FT-L 1.00 / 1.00 / 0.47 / 0.37, MEND 1.00 / 1.00 / 0.49 /
0.48, KE 1.00 / 1.00 / 0.49 / 0.42; untrained SERAC Reliability 0.00; trained SERAC adjusted
T-generality 0.00; control-shift M-locality 0.28, drift 0.70; untrained MEND M-locality 0.35, drift
0.61; untrained KE Reliability 0.69. Untrained MEND is *better* than trained on the mirror spread
(0.78 vs 1.28 nats): on this toy world training buys locality, not balance (toy world v3's job).
"""

from __future__ import annotations

import pytest

from mllm_audit.metrics.edits import aggregate
from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix
from mllm_audit.toy.evaluate import write_untrained_state

N_EDITS = 16
BARS = {  # metric: (bound, "min" | "max")
    "reliability": (0.9, "min"),
    "t_generality_adjusted": (0.5, "min"),
    "m_locality_top10_easyedit": (0.45, "min"),
    "neighbour_drift": (0.55, "max"),
}
REAL = ("ft-l", "mend", "ke")
CHEATS = {"no-op": "serac-untrained", "exact-match": "serac", "shift": "control-shift",
          "untrained-mend": "mend-untrained", "untrained-ke": "ke-untrained"}


def failed_bars(m: dict) -> list[str]:
    out = []
    for key, (bound, way) in BARS.items():
        v = m[key]
        if v is None or (v < bound if way == "min" else v > bound):
            out.append(key)
    return out


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    toy = load_model("toy")
    tmp = tmp_path_factory.mktemp("cheats")
    out = {}
    for name in (*REAL, *CHEATS.values()):
        editor = name.removesuffix("-untrained")
        state = write_untrained_state(editor, toy, tmp / name) if name.endswith("-untrained") else None
        res = run_fix(editor=editor, editor_state=state, limit=N_EDITS, output=tmp / f"fix-{name}", adapter=toy)
        out[name] = aggregate([r for r in res.edits if r["meta"].get("planted")])
    return out


@pytest.mark.parametrize("editor", REAL)
def test_trained_editors_pass_every_bar(rows: dict[str, dict], editor: str) -> None:
    assert failed_bars(rows[editor]) == [], {k: rows[editor][k] for k in BARS}


@pytest.mark.parametrize(("cheat", "expected"), [
    ("no-op", "reliability"), ("exact-match", "t_generality_adjusted"), ("shift", "m_locality_top10_easyedit"),
    ("untrained-mend", "m_locality_top10_easyedit"), ("untrained-ke", "reliability"),
])
def test_each_cheat_fails_a_bar(rows: dict[str, dict], cheat: str, expected: str) -> None:
    m = rows[CHEATS[cheat]]
    assert expected in failed_bars(m), {k: m[k] for k in BARS}
    if cheat == "exact-match":  # Reliability alone cannot see it
        assert m["reliability"] >= 0.9 and m["t_generality_adjusted"] <= 0.1
