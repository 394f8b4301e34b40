"""Editor settings as users keep them (issue 25): `--set` for every editor checked against its declared
settings, and `--hparams` reading EasyEdit's own hparams YAMLs (tests/fixtures/easyedit, copied from
zjunlp/EasyEdit: SOURCES.md), each field mapped or accounted for by name, or the file refused naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mllm_audit.cli import run
from mllm_audit.editors.hparams import EASYEDIT, SETTINGS, TRAIN_SETTINGS, read_easyedit_hparams, resolve_settings
from mllm_audit.errors import AuditError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "easyedit"
FILES = {"FT-llama-7b.yaml": "ft-l", "IKE-blip2.yaml": "ike", "MEND-blip2.yaml": "mend", "SERAC-blip2.yaml": "serac",
         "KE-gpt2-xl.yaml": "ke"}


def test_declared_settings_are_the_editors_own_keys() -> None:
    """A declaration that drifts from the editor's defaults (a renamed or new hyperparameter) fails here."""
    from mllm_audit.editors import control, ft, ike
    from mllm_audit.editors.learned.ke import KE
    from mllm_audit.editors.learned.mend import MEND
    from mllm_audit.editors.learned.serac import SERAC
    from mllm_audit.editors.learned.training import TRAIN_DEFAULTS

    assert set(SETTINGS["ft-l"]) == set(SETTINGS["ft-v"]) == {*ft.VARIANTS["easyedit"], "variant"}
    assert set(SETTINGS["ike"]) == {*ike.VARIANTS["easyedit"], "variant"}
    assert set(SETTINGS["control-shift"]) == set(control.DEFAULTS)
    for cls, extra in ((MEND, set()), (KE, set()), (SERAC, {"routing", "counterfactual", "cf_context"})):
        net = {*cls.defaults, *(k for v in cls.variants.values() for k in v), *(["variant"] if cls.variants else [])}
        assert set(TRAIN_SETTINGS[cls.name]) == {*TRAIN_DEFAULTS, *net, *extra}, cls.name
    from mllm_audit.editors import EDITORS

    assert set(SETTINGS) == set(EDITORS)  # every editor declares (mend/ke: nothing at fix time)


@pytest.mark.parametrize(("name", "editor"), sorted(FILES.items()))
def test_every_field_of_a_real_easyedit_file_is_mapped_or_accounted(name: str, editor: str) -> None:
    fields = yaml.safe_load((FIX / name).read_text())
    settings, accounted = read_easyedit_hparams(FIX / name, editor)
    table = EASYEDIT[fields["alg_name"]][1]
    mapped = {f for f in fields if isinstance(table.get(f), tuple)}
    assert mapped | set(accounted) == set(fields)
    assert {table[f][0] for f in mapped} == set(settings)
    train = editor in TRAIN_SETTINGS
    assert set(settings) <= set((TRAIN_SETTINGS if train else SETTINGS)[editor])


def test_the_ft_and_mend_files_map_to_these_values() -> None:
    ft, why = read_easyedit_hparams(FIX / "FT-llama-7b.yaml", "ft-l")
    assert ft == {"steps": 25, "lr": 5e-4, "weight_decay": 0.0, "norm_constraint": None}
    assert why["rewrite_module_tmp"] == "from the model card" and why["device"] == "a CLI option: --device"
    mend, _ = resolve_settings("mend", ["rank=8"], FIX / "MEND-blip2.yaml", train=True)
    assert mend["init_lr"] == 1e-4 and mend["c_edit"] == 0.1 and mend["norm"] == "feature" and mend["rank"] == 8


@pytest.mark.parametrize(("field", "value"), [("kl_factor", 0.5), ("fancy_trick", 1), ("batch_size", 4)])
def test_an_unmapped_field_or_value_is_refused_by_name(tmp_path: Path, field: str, value: object) -> None:
    """Negative control of the mapping: the FT file with one field it cannot honour."""
    text = (FIX / "FT-llama-7b.yaml").read_text()
    data = yaml.safe_load(text)
    data[field] = value
    bad = tmp_path / "ft.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(AuditError, match=f"EasyEdit field '?{field}'?"):
        read_easyedit_hparams(bad, "ft-l")


def test_set_is_checked_for_every_editor_and_lists_the_valid_keys(capsys: pytest.CaptureFixture[str]) -> None:
    for editor, valid in SETTINGS.items():
        assert run(["fix", "--editor", editor.upper(), "--set", "no_such_key=1"]) == 2
        err = capsys.readouterr().err
        assert f"not a setting of {editor}" in err and "Traceback" not in err
        assert all(k in err for k in valid)
    assert run(["fix", "--editor", "ft-l", "--set", "steps=many"]) == 2
    assert "steps must be an int" in capsys.readouterr().err
    assert run(["train-editor", "--editor", "mend", "--set", "routing=soft", "-o", "x"]) == 2
    assert "not a setting of mend" in capsys.readouterr().err


def test_fix_runs_with_the_ft_file_and_records_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run(["fix", "--editor", "FT-L", "--hparams", str(FIX / "FT-llama-7b.yaml"), "--set", "steps=2",
                "--limit", "1", "-q", "-o", str(out)]) == 0
    editor = json.loads((out / "results.json").read_text())["editor"]
    assert editor["name"] == "ft-l"
    assert editor["options"] == {"steps": 2, "lr": 5e-4, "weight_decay": 0.0, "norm_constraint": None}
    assert editor["hparams_file"]["accounted"]["kl_factor"] == "fixed at 0 here"
    steps = [json.loads(x)["steps"] for x in (out / "edits.jsonl").read_text().splitlines()]
    assert steps and all(s is None or s <= 2 for s in steps)
