# Over 350 lines: the typed run record: every field of results.json and the schema generator in one file.
"""The run record: `results.json` as typed, versioned dataclasses, written and read in one place.

Every command that writes a run folder (scan, fix, gen-scan, train-editor) builds a `RunRecord`;
every reader (gate, compare, report, resume) goes through `read_record`. The layout is flat JSON:

    header    schema, command, run_id, versions, seed, created
    identity  model {...}, suite {...}, score_options {...}   what the numbers depend on
    options   run options that do not change a score (batch size, device, processes)
    coverage  n_items (the suite), n_selected (split/limit), n_scored (items in the record)
    counters  images_encoded, forward_passes
    finish    complete, timings, finished_at, interrupted
    payload   the command's results (summary, metrics, ...), kept at the top level

`docs/run-record.schema.json` is generated from these classes (`python -m mllm_audit.runs.record`)
and a test checks that the file matches. Version 1 records (before coverage and full-file
identity) are still read; their coverage is derived from the summary where it can be. Version 1 and 2
records stored the `percent` metrics as fractions; every reader converts them (`upgrade_results`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_audit import __version__
from mllm_audit.errors import AuditError
from mllm_audit.util.identity import first_difference

RESULTS_SCHEMA = "mllm-audit/results/v3"  # v3: percent metrics (pct_biased, ...) stored 0..100
# Margins (and log-probabilities) of a run agree with those of any other batch size, and of an
# uninterrupted run when resumed, within this many nats; not bit for bit: fp32 matmuls of other
# padded shapes round differently (measured on the toy suite, batch 1 vs 16 and 64: README). Stored in the
# scan and fix records `new_record` makes (`margin_tolerance`) and asserted by tests/runs/test_exactness.py.
MARGIN_TOLERANCE = 1e-5
MARGIN_COMMANDS = ("scan", "fix")  # the records whose margins the tolerance was measured on (not gen-scan, locate)
FRACTION_SCHEMAS = ("mllm-audit/results/v1", "mllm-audit/results/v2")  # percent metrics stored 0..1
READABLE_SCHEMAS = (*FRACTION_SCHEMAS, RESULTS_SCHEMA)
SCHEMA_FILE = "run-record.schema.json"


@dataclass
class Header:
    """Which command wrote the run, when, with which software."""

    command: str
    run_id: str
    schema: str = RESULTS_SCHEMA
    versions: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    created: str | None = None


@dataclass
class ModelIdentity:
    """The model the numbers belong to: full-file sha256 of every weight, config and tokenizer file."""

    name: str
    source: str | None = None
    revision: str | None = None  # card revision, else "sha256:<hex>" over every file (None: hub id, no files)
    family: str | None = None
    dtype: str | None = None
    quantization: str | None = None
    files: dict[str, str] | None = None  # relative file name -> sha256
    templates: dict[str, str] | None = None  # the card's prompt templates (they change every score)
    templates_from: str | None = None  # which card they came from (see models.cards.resolve_card)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SuiteIdentity:
    """The suite: its items' hash, and the hash of every image file the run reads and where from."""

    name: str
    source: str | None = None
    content_hash: str | None = None
    n_items: int | None = None
    kind: str | None = None
    images_root: str | None = None
    n_images: int | None = None
    images_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Identity:
    """Everything `--resume` must find unchanged."""

    model: ModelIdentity
    suite: SuiteIdentity
    score_options: dict[str, Any] = field(default_factory=dict)  # seed, templates, editor settings, ...

    def as_dict(self) -> dict[str, Any]:
        return {"model": to_plain(self.model), "suite": to_plain(self.suite), "score_options": dict(self.score_options)}


@dataclass
class Coverage:
    """How much of the suite the run covers; a run with n_scored < n_items is a subset, never the suite."""

    n_items: int
    n_selected: int
    n_scored: int = 0
    split: str | None = None
    limit: int | None = None
    shard: str | None = None

    @property
    def subset(self) -> bool:
        return self.n_scored < self.n_items

    def describe(self) -> str:
        """`288 items` for a whole suite, `96 of 288 items (--limit 96)` for part of one."""
        if not self.subset:
            return f"{self.n_scored} items"
        why = [f"--split {self.split}"] if self.split else []
        why += [f"--limit {self.limit}"] if self.limit is not None else []
        why += [f"shard {self.shard}"] if self.shard else []
        return f"{self.n_scored} of {self.n_items} items" + (f" ({', '.join(why)})" if why else "")


@dataclass
class Counters:
    images_encoded: int = 0
    forward_passes: int = 0
    # Continuations scored as the tokenizer splits them after the prompt, where that differs from
    # tokenizing them alone (scoring.py's boundary rule); 0 for tokenizers without the difference.
    joint_tokenization: int = 0
    # Shared image prefixes (scoring.prefix): prompts beyond an image's first that read its shared
    # prefix (in the same tree row, or from its cache) instead of running their own copy of it, and the
    # prefix token-forwards that spared. Counted prompts, not passes: one tree pass may spare many.
    prefix_forwards_saved: int = 0
    prefix_tokens_saved: int = 0


@dataclass
class Finish:
    """`complete` is true only once the last item is in; an interrupted run says so."""

    complete: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    finished_at: str | None = None
    interrupted: str | None = None


@dataclass
class RunRecord:
    header: Header
    identity: Identity
    options: dict[str, Any] = field(default_factory=dict)
    coverage: Coverage | None = None
    counters: Counters | None = None
    finish: Finish = field(default_factory=Finish)
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.finish.complete

    def to_dict(self) -> dict[str, Any]:
        h, f = self.header, self.finish
        out: dict[str, Any] = {
            "schema": h.schema, "command": h.command, "run_id": h.run_id, "complete": f.complete,
            **self.identity.as_dict(), "versions": dict(h.versions), "seed": h.seed, "created": h.created,
            "options": dict(self.options),
        }
        if self.coverage is not None:
            out["coverage"] = to_plain(self.coverage)
        if self.counters is not None:
            out["counters"] = to_plain(self.counters)
        out["timings"] = dict(f.timings)
        if f.finished_at is not None:
            out["finished_at"] = f.finished_at
        if f.interrupted is not None:
            out["interrupted"] = f.interrupted
        clash = sorted(set(self.payload) & set(out))
        if clash:
            raise ValueError(f"payload key {clash[0]!r} is a record field")
        out.update(self.payload)
        return out

    def finished(self, timings: dict[str, float] | None = None) -> RunRecord:
        """Mark complete (the caller writes the record after)."""
        self.finish.complete = True
        self.finish.interrupted = None
        self.finish.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S")
        if timings is not None:
            self.finish.timings = {k: round(float(v), 4) for k, v in timings.items()}
        return self

    def write(self, run_dir: Path) -> None:
        from mllm_audit.util.files import atomic_write_json

        atomic_write_json(Path(run_dir) / "results.json", self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, where: str = "results.json") -> RunRecord:
        """Parse and type-check a record; a wrong type or missing field is one line naming it."""
        if not isinstance(data, dict):
            raise AuditError(f"{where}: expected a JSON object")
        schema = data.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise AuditError(f"{where}: schema {schema!r} is not one of {', '.join(READABLE_SCHEMAS)}")
        d = dict(data)
        taken = {"schema", "command", "run_id", "complete", "model", "suite", "score_options", "versions", "seed",
                 "created", "options", "coverage", "counters", "timings", "finished_at", "interrupted"}
        header = _build(Header, {k: d.get(k) for k in ("command", "run_id", "schema", "versions", "seed", "created")
                                 if d.get(k) is not None}, where)
        model = _build(ModelIdentity, _with_extra(ModelIdentity, d.get("model") or {"name": "?"}, f"{where}: model"),
                       f"{where}: model")
        suite = _build(SuiteIdentity, _with_extra(SuiteIdentity, d.get("suite") or {"name": "?"}, f"{where}: suite"),
                       f"{where}: suite")
        ident = Identity(model, suite, _typed(d.get("score_options") or {}, dict, f"{where}: score_options"))
        cov = _build(Coverage, d["coverage"], f"{where}: coverage") if d.get("coverage") is not None else None
        counters = d.get("counters")
        cnt = _build(Counters, {k: v for k, v in counters.items() if k in ("images_encoded", "forward_passes")},
                     f"{where}: counters") if isinstance(counters, dict) and counters else None
        fin = _build(Finish, {k: d[k] for k in ("complete", "timings", "finished_at", "interrupted")
                              if d.get(k) is not None}, where)
        rec = cls(header, ident, _typed(d.get("options") or {}, dict, f"{where}: options"), cov, cnt, fin,
                  {k: v for k, v in d.items() if k not in taken})
        if rec.coverage is None:
            rec.coverage = _derived_coverage(rec)
        return rec


def _derived_coverage(rec: RunRecord) -> Coverage | None:
    """Coverage of a record written before coverage existed: from the summary's `all` row."""
    n_items = rec.identity.suite.n_items
    row = (rec.payload.get("summary") or {}).get("all") if isinstance(rec.payload.get("summary"), dict) else None
    if not isinstance(n_items, int) or not isinstance(row, dict) or not isinstance(row.get("n"), int):
        return None
    return Coverage(n_items=n_items, n_selected=row["n"], n_scored=row["n"],
                    split=rec.options.get("split"), limit=rec.options.get("limit"))


def upgrade_results(data: Any) -> Any:
    """A results.json of an older schema in today's units: the one place old records are converted.

    v1/v2 scan summaries stored every `percent` metric (pct_biased, its interval, pct_within_tau, ...)
    as a share 0..1; v3 stores percent 0..100. The rows are multiplied by the catalog's `percent` (the
    same operation the summary uses, so a converted record equals a rescored one bit for bit) and the
    schema becomes v3. A record of another schema or command is returned unchanged (not copied)."""
    if not isinstance(data, dict) or data.get("schema") not in FRACTION_SCHEMAS:
        return data
    from mllm_audit.metrics.catalog import PERCENT_METRICS, percent

    out = dict(data, schema=RESULTS_SCHEMA)
    summary = data.get("summary")
    if str(data.get("command") or "scan") == "scan" and isinstance(summary, dict):
        out["summary"] = {label: {k: percent(v) if k in PERCENT_METRICS and _is_number(v) else v
                                  for k, v in row.items()} if isinstance(row, dict) else row
                          for label, row in summary.items()}
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_results_json(run_dir: Path | str) -> dict[str, Any]:
    """results.json of a run folder as a dict in today's units (older schemas converted on read);
    a missing or malformed file is one line naming it. Every results reader goes through here."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise AuditError(f"no results.json in {run_dir}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AuditError(f"{path}: malformed JSON ({getattr(e, 'msg', 'not UTF-8')})") from None
    except RecursionError:
        raise AuditError(f"{path}: JSON nested too deeply") from None
    return upgrade_results(data)


def read_record(run_dir: Path | str) -> RunRecord:
    """The record of a run folder (older schemas converted); a missing or malformed results.json is one line."""
    return RunRecord.from_dict(read_results_json(run_dir), str(Path(run_dir) / "results.json"))


# ---- typing helpers -------------------------------------------------------------------------------


def to_plain(obj: Any) -> dict[str, Any]:
    """A record part as JSON-ready dict (an `extra` field's keys are merged in)."""
    d = dataclasses.asdict(obj)
    extra = d.pop("extra", None) or {}
    return {**d, **extra}


def _with_extra(cls: type, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise AuditError(f"{where}: {cls.__name__} must be an object")
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return {**{k: v for k, v in data.items() if k in names}, "extra": {k: v for k, v in data.items() if k not in names}}


def _typed(value: Any, tp: Any, where: str) -> Any:
    if not _matches(value, tp):
        raise AuditError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__}")
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in data:
            _typed(data[f.name], hints[f.name], f"{where}: field {f.name!r}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise AuditError(f"{where}: missing field {f.name!r}")
    return cls(**data)


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        return isinstance(value, dict) and (not args or all(_matches(v, args[1]) for v in value.values()))
    if origin is list:
        return isinstance(value, list) and all(_matches(v, typing.get_args(tp)[0]) for v in value)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# ---- JSON Schema ------------------------------------------------------------------------------------


def _schema_of(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema_of(a) for a in typing.get_args(tp)]}
    simple = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}
    if tp in simple:
        return {"type": simple[tp]}
    if tp is Any:
        return {}
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        return {"type": "object", **({"additionalProperties": _schema_of(args[1])} if args and args[1] is not Any
                                     else {})}
    if dataclasses.is_dataclass(tp):
        return _object_schema(tp)
    raise TypeError(f"no JSON Schema for {tp!r}")


def _object_schema(cls: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props, required = {}, []
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name == "extra":
            continue
        props[f.name] = _schema_of(hints[f.name])
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    out: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of results.json, generated from the dataclasses above."""
    hints = typing.get_type_hints(RunRecord)
    props: dict[str, Any] = {}
    required: list[str] = []
    header = _object_schema(Header)
    props.update(header["properties"])
    required += header["required"]
    props["schema"] = {"enum": list(READABLE_SCHEMAS)}
    ident_hints = typing.get_type_hints(Identity)
    for name in ("model", "suite", "score_options"):
        props[name] = _schema_of(ident_hints[name])
    required += ["model", "suite"]
    props["options"] = _schema_of(hints["options"])
    props["coverage"] = _schema_of(Coverage)
    props["counters"] = _schema_of(Counters)
    finish = _object_schema(Finish)
    props.update(finish["properties"])
    required.append("complete")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mllm-audit/run-record.schema.json",
        "title": "mllm-audit run record (results.json)",
        "description": " ".join((__doc__ or "").split("\n\n")[0].split()),
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": True,  # the command's payload (summary, metrics, ...)
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


if __name__ == "__main__":  # regenerate docs/run-record.schema.json
    target = Path(__file__).resolve().parents[2] / "docs" / SCHEMA_FILE
    target.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {target}")


# ---- resume -----------------------------------------------------------------------------------------


def _short(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 24 else s[:21] + "..."


def check_resume(old: RunRecord, new: Identity, run_dir: Path, command: str, verb: str = "run",
                 selection: tuple[str | None, int | None] | None = None) -> None:
    """Refuse to continue a run whose model, suite or score options differ, naming the first field.

    `selection` (split, limit) of the resuming run is compared first: another --limit or --split
    selects other items (and so other images), which is not a change of the suite's content."""
    if old.header.command != command:
        raise AuditError(f"cannot resume {run_dir}: it holds a {old.header.command!r} run, not {command}")
    if selection is not None and old.coverage is not None and (old.coverage.split, old.coverage.limit) != selection:
        def flags(split: str | None, limit: int | None) -> str:
            given = [f"--split {split}"] if split else []
            given += [f"--limit {limit}"] if limit is not None else []
            return " ".join(given) or "no --split or --limit"

        was = flags(old.coverage.split, old.coverage.limit)
        raise AuditError(f"cannot resume {run_dir}: it was {verb} with {was}, this run gives {flags(*selection)}; "
                         "resume with the same selection")
    before = old.identity.as_dict()
    now = new.as_dict()
    for part in ("model", "suite", "score_options"):
        diff = first_difference(before[part], now[part], part)
        if diff is None:
            continue
        name, a, b = diff
        what = f"{name} differs (was {_short(a)}, now {_short(b)})"
        if part == "model":
            lead = f"it was {verb} with model {old.identity.model.name!r}, not this one: {what}"
        elif part == "suite":
            lead = f"the suite's content changed since: {what}"
        else:
            lead = what
        raise AuditError(f"cannot resume {run_dir}: {lead}; choose another --output")


# ---- building identities ------------------------------------------------------------------------------


def model_identity(ident: dict[str, Any]) -> ModelIdentity:
    """An adapter's `identity()` dict as the typed record part."""
    return _build(ModelIdentity, _with_extra(ModelIdentity, ident, "model"), "model")


def suite_identity(suite: Any, items: Any = None) -> SuiteIdentity:
    """A suite's identity plus the images the run reads (`items`: the selection; None: no images read)."""
    from mllm_audit.suites.items import iter_image_refs
    from mllm_audit.util.identity import images_digest

    base = dict(suite.identity())
    if items is not None:
        refs = [ref for it in items for ref in (*iter_image_refs(it), *_meta_image_refs(it))]
        base.update(images_digest(suite.images_root, refs, suite.image_path))
        from mllm_audit.suites.items import pixel_budget

        base["max_pixels"] = pixel_budget()  # larger images are reduced to it: part of what was scored
    return _build(SuiteIdentity, _with_extra(SuiteIdentity, base, "suite"), "suite")


def _meta_image_refs(item: Any) -> list[str]:
    """Images an item names in its meta that a run also reads (fix's parity: the mirror images)."""
    mirrors = (getattr(item, "meta", None) or {}).get("mirrors") or []
    return [str(m["image"]) for m in mirrors if isinstance(m, dict) and m.get("image")]


def new_record(command: str, run_id: str, model: ModelIdentity, suite: SuiteIdentity, seed: int | None,
               score_options: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
               coverage: Coverage | None = None, payload: dict[str, Any] | None = None) -> RunRecord:
    """A fresh, incomplete record (versions of the software filled in)."""
    from mllm_audit.runs.record import versions

    header = Header(command=command, run_id=run_id, versions=versions(), seed=seed,
                    created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return RunRecord(header, Identity(model, suite, dict(score_options or {})), dict(options or {}), coverage,
                     None, Finish(), {**({"margin_tolerance": MARGIN_TOLERANCE} if command in MARGIN_COMMANDS else {}),
                                      **dict(payload or {})})


def versions() -> dict[str, str]:
    import torch
    import transformers

    return {"mllm-audit": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
