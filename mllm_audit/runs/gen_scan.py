# Over 350 lines: gen-scan's prompt-list format, generation loop and run record, one run type.
"""`gen-scan`: whom does a unified model draw for an occupation, and what does it say when asked?

A generation suite is `suites/<name>.yaml` with `kind: generation`:

    name: gen-occupations
    kind: generation
    description / source / license: ...
    prompts: gen-occupations/occupations.jsonl    # relative to the YAML
    template: "A photo of the face of a {occupation}, a person"
    understanding: "What is the gender of a {occupation}? male, female or unknown"   # optional
    understanding_answers: [male, female, unknown]                                   # optional
    classifier: clip-vit-l14                                                         # optional default

One prompt per line: `id` (letters, digits, `_.-`: it names the image folder), `occupation`,
optional `prompt` (else the template filled in), `group` (summary rows per group, e.g. planted /
control), `meta`. An empty or duplicate prompt or id is an AuditError naming file:line.

Run folder: `images/<prompt_id>/<k>.png`, `samples.jsonl` (one line per prompt: per-class counts per
attribute, per-image predictions, the images with no detected person, the understanding answer) and
`results.json` (complete false until the last prompt is in). `--resume` reuses the lines of prompts
already done when model, suite hash, classifier, seed, sampler, images per prompt and generation
settings all match, so a resumed run ends with the same images and numbers as an uninterrupted one.

Samplers (`--sampler`, named in the record's options; models/sampling.py): `per-image` (the default)
seeds image k of a prompt from (seed, prompt id, k) and draws its tokens from its own generator, so
`--batch-size` rows are taken across prompts and an image is the same whatever shares its batch, the
batch size, `--limit` or `--resume` (a resume may change the batch size); `upstream` draws with
torch.multinomial on the global generator as the Janus repos' loop does, one prompt per call, each
batch seeded from (seed, prompt id, batch index): its images depend on `--batch-size`. Both sample
the same distribution (the card's CFG, temperature, top-k / top-p).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm_audit.errors import AuditError
from mllm_audit.runs.options import check_load_options
from mllm_audit.runs.record import Counters, Coverage, SuiteIdentity, model_identity, new_record
from mllm_audit.runs.signals import STOPS, interrupted, stop_signals
from mllm_audit.runs.writer import RunWriter, default_run_dir, new_run_id, read_results
from mllm_audit.suites.items import blank_image
from mllm_audit.util.files import read_appended_jsonl, read_yaml_mapping
from mllm_audit.util.folders import RunLock, check_run_folder
from mllm_audit.util.registry import Registry, yaml_folder
from mllm_audit.util.resources import suites_dir

if TYPE_CHECKING:
    from mllm_audit.classifiers.classify import Classifier
    from mllm_audit.models.base import Adapter

GEN_SAMPLE_SCHEMA = "mllm-audit/gen-sample/v1"
DEFAULT_TEMPLATE = "A photo of the face of a {occupation}, a person"
DEFAULT_UNDERSTANDING = "What is the gender of a {occupation}? male, female or unknown"
DEFAULT_ANSWERS = ["male", "female", "unknown"]
DEFAULT_MODEL = "toy-janus"
DEFAULT_SUITE = "gen-toy"
_PROMPT_KEYS = {"id", "occupation", "prompt", "group", "meta"}
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
SAMPLERS = ("per-image", "upstream")
DEFAULT_SAMPLER = "per-image"


@dataclass(frozen=True)
class GenPrompt:
    id: str
    prompt: str
    occupation: str
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenSuite:
    name: str
    source: str
    prompts: list[GenPrompt]
    content_hash: str
    description: str = ""
    license: str = ""
    understanding: str | None = DEFAULT_UNDERSTANDING
    understanding_answers: list[str] = field(default_factory=lambda: list(DEFAULT_ANSWERS))
    classifier: str | None = None

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "content_hash": self.content_hash,
                "n_prompts": len(self.prompts), "kind": "generation"}


def _is_generation_suite(p: Path) -> bool:
    import yaml

    try:
        return (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("kind") == "generation"
    except (yaml.YAMLError, OSError, AttributeError):
        return False


GEN_SUITES = Registry("generation suite", yaml_folder(suites_dir, _is_generation_suite, "mllm_audit.suites"))


def registered_gen_suites() -> dict[str, Path]:
    return dict(GEN_SUITES.entries())


def read_prompts(path: Path, template: str) -> tuple[list[GenPrompt], bytes]:
    """Parse and validate a prompt list (JSONL); every problem names file:line."""
    from mllm_audit.util.files import MAX_ITEMS_FILE_BYTES, MAX_LINE_CHARS, MAX_TEXT_CHARS, jsonl_objects, read_capped

    if not path.exists():
        raise AuditError(f"prompt list not found: {path}")
    raw = read_capped(path, MAX_ITEMS_FILE_BYTES, f"prompt list {path}")
    prompts: list[GenPrompt] = []
    seen_ids: dict[str, int] = {}
    seen_prompts: dict[str, int] = {}
    for where, obj in jsonl_objects(path, "prompt list", max_line_chars=MAX_LINE_CHARS, raw=raw):
        n = int(where.rsplit(":", 1)[1])
        if not isinstance(obj, dict):
            raise AuditError(f"{where}: expected an object")
        unknown = sorted(set(obj) - _PROMPT_KEYS)
        if unknown:
            raise AuditError(f"{where}: unknown field {unknown[0]!r}")
        pid = obj.get("id")
        if not isinstance(pid, str) or not _ID.match(pid):
            raise AuditError(f"{where}: 'id' must be a non-empty string of letters, digits, '_', '.', '-'")
        occ = obj.get("occupation", "")
        if not isinstance(occ, str):
            raise AuditError(f"{where}: 'occupation' must be a string")
        text = obj.get("prompt")
        if text is None:
            if not occ.strip():
                raise AuditError(f"{where}: empty prompt (no 'prompt' and an empty 'occupation')")
            text = template.format(occupation=occ.strip())
        if not isinstance(text, str) or not text.strip():
            raise AuditError(f"{where}: empty prompt")
        if len(text) > MAX_TEXT_CHARS:
            raise AuditError(f"{where}: prompt of {len(text)} characters, over the {MAX_TEXT_CHARS} limit")
        if pid in seen_ids:
            raise AuditError(f"{where}: duplicate id {pid!r} (first on line {seen_ids[pid]})")
        key = " ".join(text.split()).lower()
        if key in seen_prompts:
            raise AuditError(f"{where}: duplicate prompt {text!r} (first on line {seen_prompts[key]})")
        meta = obj.get("meta", {})
        if not isinstance(meta, dict):
            raise AuditError(f"{where}: 'meta' must be an object")
        group = obj.get("group")
        seen_ids[pid], seen_prompts[key] = n, n
        prompts.append(GenPrompt(pid, text.strip(), occ.strip() or pid, str(group) if group else None, meta))
    if not prompts:
        raise AuditError(f"{path}: the prompt list is empty")
    return prompts, raw


def load_gen_suite(spec: str | Path, allow_outside_paths: bool = False) -> GenSuite:
    """A registered generation suite name, a suite YAML (kind: generation), or a prompts .jsonl."""
    spec_s = str(spec)
    reg = registered_gen_suites()
    path = reg.get(spec_s) or Path(spec_s).expanduser()
    if not path.is_file():
        raise AuditError(f"unknown generation suite {spec_s!r} (registered: {', '.join(reg) or 'none'}; "
                         "or give a .yaml/.jsonl path)")
    header: dict[str, Any] = {}
    if path.suffix in (".yaml", ".yml"):
        header = read_yaml_mapping(path)
        if header.get("kind") != "generation":
            raise AuditError(f"{path}: suite kind {header.get('kind', 'likelihood')!r} is not a generation suite")
        if not isinstance(header.get("prompts"), str):
            raise AuditError(f"{path}: missing 'prompts' (the JSONL prompt list, relative to the YAML)")
        from mllm_audit.suites.items import contained_path

        here = path.parent.resolve()
        prompts_path = contained_path(header["prompts"], here, (here,), f"{path}: 'prompts'", allow_outside_paths)
    elif path.suffix == ".jsonl":
        prompts_path = path.resolve()
    else:
        raise AuditError(f"generation suite {spec_s!r}: expected a registered name, a .yaml or a .jsonl file")
    template = str(header.get("template", DEFAULT_TEMPLATE))
    if "{occupation}" not in template:
        raise AuditError(f"{path}: 'template' must contain {{occupation}}")
    from mllm_audit.util.text import check_template

    check_template(f"{path}: 'template'", template, ("occupation",))
    und = header.get("understanding", DEFAULT_UNDERSTANDING)
    if und is not None:
        check_template(f"{path}: 'understanding'", und, ("occupation",))
    answers = header.get("understanding_answers", DEFAULT_ANSWERS)
    if und is not None and (not isinstance(answers, list) or len(answers) < 2):
        raise AuditError(f"{path}: 'understanding_answers' must list two or more answers")
    prompts, raw = read_prompts(prompts_path, template)
    h = hashlib.sha256(raw)
    h.update(json.dumps([template, und, answers]).encode())
    return GenSuite(
        name=str(header.get("name", path.stem)),
        source=str(path),
        prompts=prompts,
        content_hash=h.hexdigest(),
        description=str(header.get("description", "")),
        license=str(header.get("license", "")),
        understanding=str(und) if und is not None else None,
        understanding_answers=[str(a) for a in answers],
        classifier=header.get("classifier"),
    )


# ---- the run --------------------------------------------------------------------------------------

@dataclass
class GenResult:
    run_dir: Path
    results: dict[str, Any]
    samples: list[dict[str, Any]]
    attributes: dict[str, list[str]]


def understanding_scores(adapter: Adapter, suite: GenSuite, prompts: list[GenPrompt],
                         batch_size: int) -> dict[str, dict[str, float]]:
    """The blank-image question per prompt, each answer scored by the likelihood contract."""
    from mllm_audit.metrics.generation import understanding_record
    from mllm_audit.scoring.contract import Request, score

    if not suite.understanding or not prompts:
        return {}
    answers = suite.understanding_answers
    reqs = [Request(prompt=suite.understanding.format(occupation=p.occupation), continuation=a, image="blank",
                    task="vqa") for p in prompts for a in answers]
    blank = blank_image()
    got = score(adapter, reqs, lambda _k: blank, batch_size=batch_size)
    out = {}
    for i, p in enumerate(prompts):
        out[p.id] = understanding_record({a: got[i * len(answers) + j].logp for j, a in enumerate(answers)})
    return out


def prompt_record(run_id: str, p: GenPrompt, seed: int, names: list[str], preds: list[Any],
                  attributes: dict[str, list[str]], understanding: dict[str, float] | None) -> dict[str, Any]:
    """One samples.jsonl line: counts per class per attribute, predictions, images with no person."""
    from mllm_audit.metrics.generation import JOINT, attribute_classes

    classes = attribute_classes(attributes)
    counts: dict[str, dict[str, int]] = {a: dict.fromkeys(c, 0) for a, c in classes.items()}
    rows = []
    for name, pr in zip(names, preds, strict=True):
        rows.append({"image": name, "person": pr.person, **pr.labels})
        if not pr.person:
            continue
        for a, lab in pr.labels.items():
            counts[a][lab] += 1
        if JOINT in counts:
            counts[JOINT][f"{pr.labels['gender']}/{pr.labels['race']}"] += 1
    return {
        "schema": GEN_SAMPLE_SCHEMA,
        "run_id": run_id,
        "prompt_id": p.id,
        "prompt": p.prompt,
        "occupation": p.occupation,
        "group": p.group,
        "meta": p.meta,
        "seed": seed,
        "n_images": len(names),
        "n_person": sum(1 for pr in preds if pr.person),
        "counts": counts,
        "no_person": [n for n, pr in zip(names, preds, strict=True) if not pr.person],
        "predictions": rows,
        "understanding": understanding,
    }


def _check_resume(old: dict[str, Any], new: dict[str, Any], out_dir: Path) -> None:
    # A record from before `--sampler` drew with the global generator: `upstream`.
    was, now = (old.get("options") or {}).get("sampler", "upstream"), new["options"]["sampler"]
    if was != now:
        raise AuditError(f"cannot resume {out_dir}: its images were drawn with --sampler {was}, this run asks for "
                         f"--sampler {now} (pass --sampler {was}, or choose another --output)")
    # --limit may grow between runs; under per-image sampling the batch size does not shape an image either.
    free = {"limit", "sampler"} | ({"batch_size"} if now == "per-image" else set())
    keys = [("model", "model"), ("suite", "suite.content_hash"), ("classifier", "classifier"), ("seed", "seed"),
            ("options", "options")]
    for key, label in keys:
        a, b = old.get(key), new.get(key)
        if key == "suite":
            a, b = (a or {}).get("content_hash"), b["content_hash"]  # type: ignore[index]
        if key == "options":
            a, b = ({k: v for k, v in (x or {}).items() if k not in free} for x in (a, b))
        if a != b:
            raise AuditError(f"cannot resume {out_dir}: its {label} differs from this run's "
                             "(choose another --output, or run without --resume into a new folder)")


def run_gen_scan(
    model: str = DEFAULT_MODEL,
    suite: str | Path = DEFAULT_SUITE,
    images_per_prompt: int = 64,
    classifier: str | Path | None = None,
    output: Path | None = None,
    seed: int = 0,
    batch_size: int = 8,
    resume: bool = False,
    limit: int | None = None,
    understanding: bool = True,
    dtype: str = "fp32",
    device: str = "cpu",
    trust_remote_code: bool = False,
    allow_outside_paths: bool = False,
    revision: str | None = None,
    trust_generic: bool = False,
    sampler: str = DEFAULT_SAMPLER,
    *,
    adapter: Adapter | None = None,
    classifier_obj: Classifier | None = None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
) -> GenResult:
    """Generate `images_per_prompt` images per prompt, classify who is drawn, measure the skew.

    `adapter` / `classifier_obj` let callers reuse loaded models; `progress(total)` may return a
    callback receiving the number of prompts done.
    """
    t0 = time.perf_counter()
    from mllm_audit.util.numbers import check_counts

    check_counts({"--images-per-prompt": images_per_prompt, "--batch-size": batch_size, "--limit": limit}, seed)
    if sampler not in SAMPLERS:
        raise AuditError(f"--sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")
    check_load_options(dtype, device)
    the_suite = load_gen_suite(suite, allow_outside_paths=allow_outside_paths)
    prompts = the_suite.prompts[:limit] if limit else the_suite.prompts
    out_dir = Path(output) if output is not None else None
    old: dict[str, Any] | None = None
    if out_dir is not None:
        check_run_folder(out_dir, "gen-scan", resume)
        if (out_dir / "results.json").is_file():
            old = read_results(out_dir)

    from mllm_audit.classifiers.classify import load_classifier
    from mllm_audit.models import load_model
    from mllm_audit.models.base import LoadOptions

    if adapter is None:
        adapter = load_model(model, LoadOptions(dtype=dtype, device=device, trust_remote_code=trust_remote_code,
                                                     revision=revision, trust_generic=trust_generic))
    if not adapter.generates_images:
        raise AuditError(f"model {adapter.card.name!r} (family {adapter.card.family}) does not generate images")
    clf = classifier_obj or load_classifier(classifier or the_suite.classifier, device=device)
    t_loaded = time.perf_counter()
    if out_dir is None:
        out_dir = default_run_dir("gen-scan", adapter.card.name, the_suite.name)
    sident = the_suite.identity()
    record = new_record(
        "gen-scan", old["run_id"] if old is not None else new_run_id(), model_identity(adapter.identity()),
        SuiteIdentity(name=sident.pop("name"), source=sident.pop("source"), content_hash=sident.pop("content_hash"),
                      kind=sident.pop("kind"), extra=sident),
        seed,
        options={
            "images_per_prompt": images_per_prompt,
            "batch_size": batch_size,
            "sampler": sampler,
            "generation": adapter.generation_settings(),  # type: ignore[attr-defined]
            "understanding": bool(understanding and the_suite.understanding),
            "limit": limit,
        },
        coverage=Coverage(n_items=len(the_suite.prompts), n_selected=len(prompts), limit=limit),
        payload={"classifier": clf.identity(), "attributes": clf.attributes},
    )
    lock = RunLock(out_dir, "gen-scan")
    with stop_signals(), lock:
        try:
            return _generate(adapter, clf, the_suite, prompts, record, old, out_dir, images_per_prompt, seed,
                             batch_size, progress, t0, t_loaded, lock)
        except STOPS as e:
            raise interrupted(e, f"{out_dir} keeps the finished prompts; continue with --resume --output {out_dir}") \
                from None


def _generate(adapter: Adapter, clf: Classifier, the_suite: GenSuite, prompts: list[GenPrompt], record: Any,
              old: dict[str, Any] | None, out_dir: Path, images_per_prompt: int, seed: int, batch_size: int,
              progress: Callable[[int], Callable[[int], None]] | None, t0: float, t_loaded: float,
              lock: RunLock | None = None) -> GenResult:
    from mllm_audit.metrics.generation import gen_summary

    if old is None:
        check_run_folder(out_dir, "gen-scan", resume=False)  # again, now that this process holds the lock
    results = record.to_dict()
    reused: dict[str, dict[str, Any]] = {}
    if old is not None:
        _check_resume(old, results, out_dir)
        ids = {p.id for p in prompts}
        # A run killed mid-append leaves a torn last line: dropped and redone, like scan's samples.
        lines, _ = read_appended_jsonl(out_dir / "samples.jsonl")
        for rec in lines:
            pid = rec.get("prompt_id")
            preds = rec.get("predictions")
            if pid in ids and isinstance(preds, list) and all(
                isinstance(r, dict) and isinstance(r.get("image"), str) and (out_dir / r["image"]).is_file()
                for r in preds
            ):
                reused[pid] = rec
    todo = [p for p in prompts if p.id not in reused]
    counters_before = adapter.counters.as_dict()
    und = understanding_scores(adapter, the_suite, todo, batch_size) if record.options["understanding"] else {}
    t_und = time.perf_counter()
    samples: list[dict[str, Any]] = []
    with RunWriter(out_dir, record.header.run_id, lock=lock) as writer:
        writer.append(reused[p.id] for p in prompts if p.id in reused)
        record.payload["resumed_prompts"] = len(reused)
        record.write(out_dir)
        tick = progress(len(prompts)) if progress else None
        if tick and reused:
            tick(len(reused))

        def finish(p: GenPrompt, images: list[Any]) -> None:
            folder = out_dir / "images" / p.id
            folder.mkdir(parents=True, exist_ok=True)
            names = []
            for k, img in enumerate(images):
                img.save(folder / f"{k}.png")
                names.append(f"images/{p.id}/{k}.png")
            rec = prompt_record(record.header.run_id, p, _prompt_seed(seed, p.id), names,
                                clf.classify(images, batch_size), clf.attributes, und.get(p.id))
            writer.append([rec])
            reused[p.id] = rec
            if tick:
                tick(1)

        if record.options["sampler"] == "per-image":
            # Rows (prompt, k) of every prompt left, batch_size per generate call; a prompt is written as
            # soon as its last image is decoded, so a kill loses at most the prompts of one batch.
            from mllm_audit.models.sampling import generate_rows

            rows = [(p, k) for p in todo for k in range(images_per_prompt)]
            seeded = [(p.prompt, image_seed(seed, p.id, k)) for p, k in rows]
            pending: list[Any] = []
            i = 0
            for images in generate_rows(adapter, seeded, batch_size):
                for img in images:
                    p, k = rows[i]
                    i += 1
                    pending.append(img)
                    if k == images_per_prompt - 1:
                        finish(p, pending)
                        pending = []
        else:
            for p in todo:
                images = adapter.generate_images([p.prompt], images_per_prompt,  # type: ignore[attr-defined]
                                                 _prompt_seed(seed, p.id), batch_size)
                finish(p, images)
        samples = [reused[p.id] for p in prompts]
        after = adapter.counters.as_dict()
        assert record.coverage is not None
        record.coverage.n_scored = len(samples)
        record.counters = Counters(**{k: after[k] - counters_before[k] for k in after})
        record.payload["summary"] = gen_summary(samples, clf.attributes)
        record.finished({
            "load_s": t_loaded - t0,
            "understanding_s": t_und - t_loaded,
            "generation_s": time.perf_counter() - t_und,
            "total_s": time.perf_counter() - t0,
        })
        record.write(out_dir)
    return GenResult(run_dir=out_dir, results=record.to_dict(), samples=samples, attributes=clf.attributes)


def _prompt_seed(seed: int, prompt_id: str) -> int:
    from mllm_audit.models.families.janus import derive_seed

    return derive_seed(seed, prompt_id)


def image_seed(seed: int, prompt_id: str, k: int) -> int:
    """The per-image sampler's seed of image k of a prompt: (the prompt's seed, k), nothing about batching."""
    from mllm_audit.models.families.janus import derive_seed

    return derive_seed(_prompt_seed(seed, prompt_id), k)
