"""The agency's local approvals: which recipe versions, at which code hash and within which
parameter bounds, this node will run.

The store is a small JSON file in the node's state folder, written by the agency admin through
``datalab node approve`` and read by the running agent before every task (so an approval or a
revocation takes effect without a restart). Writes go to a temporary file that replaces the old
one, so a reader never sees half a file. The hub cannot write here: an approval is the agency's
own decision, kept on the agency's side.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from datalab.errors import BadRequest, TaskRefused
from datalab.wire import Task
from recipes.contract import check_bounds

#: The file, in the node's state folder, that holds the approvals.
APPROVALS_FILE = "approvals.json"

_BOUND_KEYS = {"minimum", "maximum", "choices"}


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe: str
    version: str
    code_sha256: str
    #: per parameter: {"minimum": x, "maximum": y, "choices": [...]} (any subset).
    bounds: dict[str, dict[str, Any]] = Field(default_factory=dict)
    approved_by: str
    approved_at: float
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.recipe}@{self.version}"


class _ApprovalFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: the agency these approvals belong to (None until a store that knows it writes the file).
    agency: str | None = None
    approvals: dict[str, Approval] = Field(default_factory=dict)


def validate_bounds(bounds: Any) -> dict[str, dict[str, Any]]:
    """Bounds as given by an admin, checked for shape; BadRequest naming what is wrong."""
    if not isinstance(bounds, Mapping):
        raise BadRequest('bounds must be a JSON object like {"level": {"choices": ["street"]}}')
    out: dict[str, dict[str, Any]] = {}
    for name, bound in bounds.items():
        if not isinstance(bound, Mapping) or not bound or set(bound) - _BOUND_KEYS:
            raise BadRequest(
                f"bounds for {name!r} must be an object with minimum, maximum and/or choices"
            )
        for edge in ("minimum", "maximum"):
            if edge in bound and (
                isinstance(bound[edge], bool) or not isinstance(bound[edge], int | float)
            ):
                raise BadRequest(f"bounds for {name!r}: {edge} must be a number")
        if "choices" in bound and not isinstance(bound["choices"], list):
            raise BadRequest(f"bounds for {name!r}: choices must be a list")
        out[str(name)] = dict(bound)
    return out


class ApprovalStore:
    """The approvals of one agency, in ``state_dir/approvals.json``.

    ``agency`` is checked against the agency recorded in the file, so one agency's approvals
    cannot be loaded by another agency's node by a mistaken ``--state``.
    """

    def __init__(self, state_dir: Path, agency: str | None = None) -> None:
        self.path = Path(state_dir) / APPROVALS_FILE
        self.agency = agency
        self._lock = threading.Lock()

    def _agency_name(self) -> str:
        return self.agency or self._load().agency or "this agency"

    # -- reading

    def _load(self) -> _ApprovalFile:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _ApprovalFile(agency=self.agency)
        data = _ApprovalFile.model_validate_json(text)
        if self.agency is not None and data.agency not in (None, self.agency):
            raise ValueError(f"{self.path} holds approvals of agency {data.agency!r}")
        return data

    def list(self) -> list[Approval]:
        return sorted(self._load().approvals.values(), key=lambda a: a.key)

    def get(self, recipe: str, version: str) -> Approval | None:
        return self._load().approvals.get(f"{recipe}@{version}")

    # -- writing (the admin's commands)

    def approve(
        self,
        recipe: str,
        version: str,
        code_sha256: str,
        bounds: Mapping[str, Any] | None = None,
        approved_by: str = "",
        note: str = "",
    ) -> Approval:
        """Approve ``recipe@version`` at ``code_sha256``, replacing an earlier approval of it."""
        if len(code_sha256) != 64 or any(c not in "0123456789abcdef" for c in code_sha256):
            raise BadRequest("code_sha256 must be 64 lower-case hex characters")
        approval = Approval(
            recipe=recipe,
            version=version,
            code_sha256=code_sha256,
            bounds=validate_bounds(bounds or {}),
            approved_by=approved_by or "unknown",
            approved_at=time.time(),
            note=note,
        )
        with self._lock:
            data = self._load()
            data.agency = data.agency or self.agency
            data.approvals[approval.key] = approval
            self._write(data)
        return approval

    def revoke(self, recipe: str, version: str) -> bool:
        """Withdraw the approval of ``recipe@version``; False when there was none."""
        with self._lock:
            data = self._load()
            removed = data.approvals.pop(f"{recipe}@{version}", None)
            if removed is not None:
                self._write(data)
        return removed is not None

    def _write(self, data: _ApprovalFile) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".approvals-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data.model_dump(mode="json"), fh, indent=2, ensure_ascii=False)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- the check before every task

    def check(self, task: Task, params: Mapping[str, Any] | None = None) -> Approval:
        """The approval covering ``task``; TaskRefused (with the command that fixes it) if none.

        ``params`` are the task's parameters after validation (defaults filled in), so a bound
        also applies to a parameter the analyst left at its default.
        """
        key = f"{task.recipe}@{task.version}"
        agency = self._agency_name()
        how = f"approve it with: datalab node approve --agency {agency} --recipe {key}"
        approval = self.get(task.recipe, task.version)
        if approval is None:
            raise TaskRefused(
                f"recipe {key} (sha256 {task.code_sha256[:12]}…) is not approved by agency "
                f"{agency}; {how}"
            )
        if approval.code_sha256 != task.code_sha256:
            raise TaskRefused(
                f"recipe {key} (sha256 {task.code_sha256[:12]}…) is not approved by agency "
                f"{agency}: the approval pins sha256 {approval.code_sha256[:12]}…; "
                f"re-{how}"
            )
        problems = check_bounds(task.params if params is None else params, approval.bounds)
        if problems:
            raise TaskRefused(
                f"parameters outside agency {agency}'s approval of {key}: " + "; ".join(problems)
            )
        return approval
