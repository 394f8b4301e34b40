"""`--model ORG/NAME[@REVISION]`: a hub id resolved the way `from_pretrained` resolves it, cache first.

A hub id whose snapshot is in the local Hugging Face cache (HF_HUB_CACHE, its `refs/` naming the commit of
a branch or tag) loads from that snapshot folder with no network, and the run records the commit. One not
in the cache is looked up on the hub once (its config.json, a short timeout, no retries); offline
(HF_HUB_OFFLINE=1) or unreachable, that fails in one line naming what to do.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mllm_audit.errors import AuditError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CONFIG_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class HubModel:
    repo: str
    revision: str | None  # as asked (@REV); None = main
    folder: Path | None  # the cached snapshot, when there is one
    commit: str | None
    config: dict


def split_revision(spec: str) -> tuple[str, str | None]:
    """`ORG/NAME@REV` -> ("ORG/NAME", "REV"); no `@` -> (spec, None)."""
    if "@" in spec and not os.path.exists(spec):
        name, _, rev = spec.rpartition("@")
        if not rev:
            raise AuditError(f"--model {spec!r}: empty revision after '@'")
        return name, rev
    return spec, None


def looks_like_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.match(spec)) and not spec.startswith((".", "/")) and not os.path.exists(spec)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def resolve_hub(repo: str, revision: str | None) -> HubModel:
    """The cached snapshot of `repo` at `revision` (branch, tag or commit), else its config from the hub."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        cache = os.environ.get("HF_HUB_CACHE") or None  # read now: huggingface_hub reads it once, at import
        folder = Path(snapshot_download(repo, revision=revision, local_files_only=True, cache_dir=cache))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        folder = None
    if folder is not None and (folder / "config.json").is_file():
        return HubModel(repo, revision, folder, folder.name, _read_config(folder / "config.json"))
    at = f"@{revision}" if revision else ""
    if _offline():
        raise AuditError(f"model {repo}{at} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set "
                         "(download it where the hub is reachable, or pass its folder with --model)")
    return HubModel(repo, revision, None, None, _fetch_config(repo, revision))


def _fetch_config(repo: str, revision: str | None) -> dict:
    """config.json from the hub: one try, a short timeout; any failure is one line."""
    from huggingface_hub import hf_hub_download

    at = f"@{revision}" if revision else ""
    _reachable(repo, at)
    try:
        path = hf_hub_download(repo, "config.json", revision=revision, etag_timeout=CONFIG_TIMEOUT_S,
                               cache_dir=os.environ.get("HF_HUB_CACHE") or None)
    except Exception as e:  # noqa: BLE001 - network, auth, missing repo: all end the same way, in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise AuditError(f"model {repo}{at}: not in the local Hugging Face cache and the hub did not answer "
                         f"({type(e).__name__}: {first}); download it where the hub is reachable, or pass "
                         "its folder with --model") from None
    return _read_config(Path(path))


def _reachable(repo: str, at: str) -> None:
    """One TCP connect to the hub's host before any download: huggingface_hub retries an unreachable host
    with backoff (five tries, ~30 s); a failed connect here is one line at once."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=CONFIG_TIMEOUT_S).close()
    except OSError as e:
        raise AuditError(f"model {repo}{at}: not in the local Hugging Face cache and the hub did not answer "
                         f"({url.hostname}:{port}: {e}); download it where the hub is reachable, or pass its "
                         "folder with --model") from None


def _read_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AuditError(f"{path}: unreadable config.json ({e})") from None
    if not isinstance(data, dict):
        raise AuditError(f"{path}: expected a JSON object")
    return data
