"""Entry-point plugins (util/registry.py): third-party packages add editors, families, suites and
classifiers without editing this project. Each test installs a distribution into a temporary site
folder (a dist-info beside the module, as pip lays it out) so nothing global changes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mllm_audit.errors import AuditError
from mllm_audit.util.registry import Registry, lazy, yaml_folder

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin"


def install(site: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> None:
    """A distribution as pip installs it: the modules, and `<name>-<version>.dist-info` with METADATA and
    entry_points.txt (the packaging spec's INI layout)."""
    site.mkdir(parents=True, exist_ok=True)
    for mod, text in modules.items():
        (site / mod).write_text(text, encoding="utf-8")
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n", encoding="utf-8")
    lines = [f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")


def install_example(site: Path) -> None:
    """examples/plugin as its own pyproject declares it."""
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    modules = {p.name: p.read_text(encoding="utf-8") for p in EXAMPLE.glob("*.py")}
    install(site, meta["name"], meta["entry-points"], modules)


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_the_example_plugin_is_ten_lines() -> None:
    code = [ln for ln in (EXAMPLE / "mllm_audit_fair_prefix.py").read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith(("#", '"""'))]
    assert len(code) <= 10


def test_example_plugin_editor_runs_through_fix(tmp_path: Path) -> None:
    """`mllm-audit fix --editor fair-prefix` finds the installed plugin and runs it on the toy model;
    negative control: the same command without the plugin installed is one line, exit 2."""
    site = tmp_path / "site"
    install_example(site)
    argv = [sys.executable, "-m", "mllm_audit.cli", "fix", "--editor", "fair-prefix", "--limit", "3", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    without = subprocess.run([*argv, "--output", str(tmp_path / "no")], capture_output=True, text=True,
                             env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert without.returncode == 2 and "unknown editor 'fair-prefix'" in without.stderr
    assert len(without.stderr.strip().splitlines()) == 1 and not (tmp_path / "no").exists()
    out = tmp_path / "run"
    done = subprocess.run([*argv, "--output", str(out)], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] and res["editor"]["name"] == "fair-prefix" and res["n_edits"] == 3
    edits = [json.loads(x) for x in (out / "edits.jsonl").read_text().splitlines()]
    # The prefix is in-context: no weight touched, and the edited margins differ from the unedited ones.
    assert res["touched_parameters"] == [] and len(edits) == 3
    assert any(abs(e["post"]["reliability"] - e["pre"]["reliability"]) > 1e-4 for e in edits)


def test_plugin_editor_is_listed_lazily_and_loads_on_get(site: Path) -> None:
    install(site, "lazy-ed", {"mllm_audit.editors": {"lazy-ed": "lazy_ed_mod:Thing"}},
            {"lazy_ed_mod.py": "import sys\nsys.modules['lazy_ed_loaded'] = sys\nclass Thing:\n    pass\n"})
    reg = Registry("editor", lazy({"ft-l": "os.path:join"}, "mllm_audit.editors"))
    assert reg.names() == ["ft-l", "lazy-ed"] and "lazy_ed_loaded" not in sys.modules  # listed, not imported
    assert reg.get("lazy-ed").__name__ == "Thing" and "lazy_ed_loaded" in sys.modules
    # negative control: without the group the plugin is not seen
    assert Registry("editor", lazy({"ft-l": "os.path:join"})).names() == ["ft-l"]


def test_a_plugin_cannot_take_a_built_in_name_and_a_broken_one_does_not_break_listing(site: Path) -> None:
    install(site, "bad-plugin", {"mllm_audit.suites": {"toy": "bad_mod:PATH", "broken": "missing_mod:PATH"}},
            {"bad_mod.py": "PATH = 'x.yaml'\n"})
    own = site / "own"
    own.mkdir()
    (own / "toy.yaml").write_text("name: toy\n")
    reg = Registry("suite", yaml_folder(lambda: own, group="mllm_audit.suites"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert reg.names() == ["toy"] and reg.get("toy") == own / "toy.yaml"  # the built-in wins
    text = " | ".join(str(w.message) for w in seen)
    assert "bad-plugin 0.1.0" in text and "'toy' ignored (the name is taken)" in text and "'broken' ignored" in text


def test_plugin_suite_is_a_yaml_path_or_a_function_returning_one(site: Path) -> None:
    (site / "plug_suite.yaml").write_text("name: plug\n")
    install(site, "suite-plugin", {"mllm_audit.suites": {"plug": "suite_mod:path", "plug2": "suite_mod:PATH"}},
            {"suite_mod.py": "from pathlib import Path\nPATH = Path(__file__).with_name('plug_suite.yaml')\n"
                             "def path():\n    return PATH\n"})
    from mllm_audit.suites.items import registered_suites

    reg = registered_suites()
    assert reg["plug"] == reg["plug2"] == site / "plug_suite.yaml" and "toy" in reg


def test_plugin_classifier_card_is_listed(site: Path) -> None:
    (site / "plug_clf.yaml").write_text("kind: linear-head\n")
    install(site, "clf-plugin", {"mllm_audit.classifiers": {"plug-clf": "clf_mod:PATH"}},
            {"clf_mod.py": "from pathlib import Path\nPATH = Path(__file__).with_name('plug_clf.yaml')\n"})
    from mllm_audit.classifiers.classify import registered_classifiers

    assert registered_classifiers()["plug-clf"] == site / "plug_clf.yaml"


def test_plugin_family_is_accepted_by_load_model(site: Path, tmp_path: Path) -> None:
    """A card naming a plugin's family reaches the plugin's `load`; an unknown family is still refused."""
    install(site, "fam-plugin", {"mllm_audit.families": {"fam-x": "fam_mod:load"}},
            {"fam_mod.py": "def load(card, options):\n    return ('loaded', card.family)\n"})
    from mllm_audit.models import FAMILY_REGISTRY, load_model

    assert "fam-x" in FAMILY_REGISTRY.names()
    card = tmp_path / "card.yaml"
    shutil.copy(ROOT / "adapters" / "toy.yaml", card)
    text = card.read_text()
    family_line = next(ln for ln in text.splitlines() if ln.startswith("family:"))
    card.write_text(text.replace(family_line, "family: fam-x"))
    assert load_model(str(card)) == ("loaded", "fam-x")
    card.write_text(text.replace(family_line, "family: fam-unknown"))
    with pytest.raises(AuditError, match="family 'fam-unknown' is not supported"):
        load_model(str(card))


def test_a_plugin_editor_that_does_not_import_is_one_line_naming_the_plugin(site: Path) -> None:
    install(site, "gone-plugin", {"mllm_audit.editors": {"gone-ed": "gone_mod_missing:Editor"}}, {})
    reg = Registry("editor", lazy({}, "mllm_audit.editors"))
    assert "gone-ed" in reg.names()  # listing needs no import
    with pytest.raises(AuditError, match=r"editor 'gone-ed' from plugin gone-plugin 0.1.0 does not load"):
        reg.get("gone-ed")
    # negative control: a built-in that fails to import is not dressed up as a plugin's failure
    with pytest.raises(ImportError):
        Registry("editor", lazy({"x": "gone_mod_missing:Editor"}, "mllm_audit.editors")).get("x")
