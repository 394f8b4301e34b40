"""Every cheat fails a bar that the trained editors pass (issue 26): one set of bars per toy world, asserted both ways.

Cheats: a no-op (untrained SERAC: routes nothing), an exact-match lookup (v2: trained SERAC, whose
scope does not recognise a paraphrase; v3: that state's scope sharpened), an input-independent shift
(control-shift), and untrained MEND and KE states. Bars (planted eval edits, 16 edits):

- toy world v2 (`toy`): Reliability >= 0.9; T-generality with the unedited model's rate subtracted
  >= 0.5; easyedit M-locality (top-10) >= 0.45; neighbour drift <= 0.55 nats. Measured (this file's
  run): FT-L 1.00 / 1.00 / 0.47 / 0.37, MEND 1.00 / 1.00 / 0.49 / 0.48, KE 1.00 / 1.00 / 0.49 / 0.42;
  untrained SERAC Reliability 0.00; trained SERAC adjusted T-generality 0.00; control-shift
  M-locality 0.28, drift 0.70; untrained MEND M-locality 0.35, drift 0.61; untrained KE Reliability
  0.69. Untrained MEND is *better* than trained on the mirror spread (0.78 vs 1.28 nats).
- toy world v3 (`toy-v3`, its own MEND/KE/SERAC states). Its LM is trained at its image positions
  (toy/v3_rows.py), so easyedit's top-10 M-locality, which pools them with the text positions, is a
  bar again. Bars: Reliability >= 0.9; adjusted T-generality >= 0.5; easyedit M-locality (top-10)
  >= 0.5; transfer ratio t <= 0.8; drift <= 0.7 nats. Measured: FT-L 1.00 / 1.00 / 0.62 / 0.76 / 0.34,
  MEND 1.00 / 1.00 / 0.59 / 0.71 / 0.40, KE 1.00 / 1.00 / 0.58 / 0.74 / 0.53; no-op Reliability 0.00;
  exact-match adjusted T-generality 0.00; shift M-locality 0.37 (and t 0.92, drift 0.72); untrained
  MEND M-locality 0.39 and drift 0.91; untrained KE Reliability 0.62. v3 also teaches the eval
  paraphrases' words, so trained SERAC is no longer the exact-match lookup (adjusted T-generality
  0.44): the exact-match cheat there is its state with the scope sharpened (toy.evaluate). The
  balanced rate under `neutral` (MEND 0.62, untrained MEND 0.19) is no bar on these weights: FT-L
  reaches only 0.19 there (KE 0.06, 0.50 since its meta-loss scores an unseen other-group image; the
  world before this retrain: FT-L 0.50, MEND 0.69, KE 0.38).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm_audit.metrics.edits import aggregate
from mllm_audit.models import load_model
from mllm_audit.runs.fix import run_fix
from mllm_audit.toy.evaluate import write_exact_match_state, write_untrained_state
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
        "m_locality_top10_easyedit": (0.5, "min"),
        "transfer_ratio": (0.8, "max"),
        "neighbour_drift": (0.7, "max"),
    },
}
REAL = ("ft-l", "mend", "ke")
CHEATS = {"no-op": "serac-untrained", "exact-match": "serac", "shift": "control-shift",
          "untrained-mend": "mend-untrained", "untrained-ke": "ke-untrained"}
# v3 teaches the eval paraphrases' words, so its trained SERAC generalises; its exact-match lookup is the
# same state with the scope sharpened until only the edit's own request matches (toy.evaluate)
CHEAT_STATE = {"toy": {}, "toy-v3": {"exact-match": "serac-exact"}}


def cheat_of(model: str, name: str) -> str:
    return CHEAT_STATE[model].get(name, CHEATS[name])


def failed_bars(got: dict[str, dict], name: str, model: str = "toy") -> list[str]:
    """The bars of `model` that `name`'s run fails."""
    out = []
    for key, (bound, way) in BARS[model].items():
        v = got[name][key]
        if v is None or (v < bound if way == "min" else v > bound):
            out.append(key)
    return out


def shown(got: dict[str, dict], name: str, model: str) -> dict[str, float]:
    return {k: got[name][k] for k in BARS[model]}


def measure(model: str, names: tuple[str, ...], tmp: Path) -> dict[str, dict]:
    """Each editor or cheat of `names` on the model's first N_EDITS biased eval items (card states)."""
    toy = load_model(model)
    out = {}
    for name in names:
        editor = name.removesuffix("-untrained")
        if name.endswith("-untrained"):
            state = write_untrained_state(editor, toy, tmp / name)
        elif name == "serac-exact":
            editor = "serac"
            state = write_exact_match_state(adapters_dir() / f"{model}-editors" / "serac", toy, tmp / name)
        else:
            state = None
        res = run_fix(model=model, editor=editor, editor_state=state, limit=N_EDITS, output=tmp / f"fix-{name}",
                      adapter=toy)
        out[name] = aggregate([r for r in res.edits if r["meta"].get("planted")])
    return out


@pytest.fixture(scope="module", params=["toy", "toy-v3"])
def rows(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, dict]]:
    model = request.param
    names = (*REAL, *dict.fromkeys([*(cheat_of(model, c) for c in CHEATS), "serac"]))
    return model, measure(model, names, tmp_path_factory.mktemp("cheats"))


@pytest.mark.parametrize("editor", REAL)
def test_trained_editors_pass_every_bar(rows: tuple[str, dict[str, dict]], editor: str) -> None:
    model, got = rows
    assert failed_bars(got, editor, model) == [], shown(got, editor, model)


EXPECTED = {  # (model, cheat) -> a bar it fails
    ("toy", "no-op"): "reliability", ("toy", "exact-match"): "t_generality_adjusted",
    ("toy", "shift"): "m_locality_top10_easyedit", ("toy", "untrained-mend"): "m_locality_top10_easyedit",
    ("toy", "untrained-ke"): "reliability",
    ("toy-v3", "no-op"): "reliability", ("toy-v3", "exact-match"): "t_generality_adjusted",
    ("toy-v3", "shift"): "m_locality_top10_easyedit", ("toy-v3", "untrained-mend"): "m_locality_top10_easyedit",
    ("toy-v3", "untrained-ke"): "reliability",
}


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_each_cheat_fails_a_bar(rows: tuple[str, dict[str, dict]], cheat: str) -> None:
    model, got = rows
    name = cheat_of(model, cheat)
    assert EXPECTED[(model, cheat)] in failed_bars(got, name, model), shown(got, name, model)
    if cheat == "exact-match":  # Reliability alone cannot see it
        assert got[name]["reliability"] >= 0.9 and got[name]["t_generality_adjusted"] <= 0.1


def test_trained_serac_reaches_unseen_paraphrases_on_v3_only(rows: tuple[str, dict[str, dict]]) -> None:
    """v3 trains the eval paraphrases' words (toy/v3_rows.py): trained SERAC's scope then routes an unseen
    paraphrase of an edit (adjusted T-generality 0.44), where its exact-match lookup stays at 0. On v2
    (the negative control) those words are random embeddings and trained SERAC is itself an exact-match
    lookup (0.00)."""
    model, got = rows
    assert (got["serac"]["t_generality_adjusted"] >= 0.3) is (model == "toy-v3"), got["serac"]
    assert got[cheat_of(model, "exact-match")]["t_generality_adjusted"] <= 0.05
