"""The analyst's client, for JupyterLab and scripts: results, never rows.

    from datalab.client import Lab
    lab = Lab("http://127.0.0.1:8700", token)
    lab.catalogue()                       # agencies, datasets, columns (no rows)
    lab.recipes()                         # what may be run
    df = lab.run("key_groups", group="elderly", level="street")
    df.attrs["provenance"]                # job id, recipe hash, nodes, suppression

Errors the hub reports come back as the same classes (``datalab.errors``): a refused job raises
``JobRefused``, a failed one ``JobFailed``, a bad parameter ``InvalidParameters``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd

from datalab.errors import DatalabError, JobFailed, JobRefused, error_from_body
from datalab.wire import (
    AgencyCatalogue,
    AgencyDecision,
    ApprovalRequestIn,
    ApprovalRequestView,
    ApprovalReview,
    AuditEntry,
    BudgetCapUpdate,
    BudgetView,
    JobRequest,
    JobState,
    JobView,
    Provenance,
    RecipeInfo,
    RuleUpdate,
    RuleView,
    SignedApproval,
    SignedCheckpoint,
    SignedRevocation,
    Table,
    TrainingView,
)

if TYPE_CHECKING:
    from datalab.federated_model import FederatedModel

#: training recipes whose model is a linear regression (the others are logistic).
LINEAR_RECIPES = {"fl_linear": "linear"}


class Lab:
    """A connection to a lab server as one person (analyst, admin, auditor or operator)."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
        self.last_provenance: Provenance | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab({self.url!r})"

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, f"/api/v1{path}", **kwargs)
        except httpx.TransportError as exc:
            raise DatalabError(f"cannot reach the lab server at {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_from_body(response.status_code, body)
        return response.json()

    # ------------------------------------------------------------------ browsing

    def whoami(self) -> dict[str, Any]:
        return self._request("GET", "/whoami")

    def catalogue(self) -> pd.DataFrame:
        """One row per column of every dataset the lab knows: metadata only, never rows."""
        records = []
        for agency in self._catalogue():
            for ds in agency.datasets:
                for col in ds.columns:
                    records.append(
                        {
                            "agency": agency.agency,
                            "node_status": agency.status,
                            "dataset": ds.name,
                            "kind": ds.kind,
                            "rows": ds.rows,
                            "column": col.name,
                            "type": col.type,
                            "class": col.klass.value,
                            "geo_level": col.geo_level,
                            "description": col.description,
                        }
                    )
        return pd.DataFrame.from_records(records)

    def datasets(self) -> pd.DataFrame:
        """One row per dataset: agency, name, kind, row count, node status."""
        records = [
            {
                "agency": a.agency,
                "dataset": d.name,
                "kind": d.kind,
                "rows": d.rows,
                "columns": len(d.columns),
                "node_status": a.status,
                "description": d.description,
            }
            for a in self._catalogue()
            for d in a.datasets
        ]
        return pd.DataFrame.from_records(records)

    def _catalogue(self) -> list[AgencyCatalogue]:
        return [AgencyCatalogue.model_validate(a) for a in self._request("GET", "/catalogue")]

    def recipes(self) -> pd.DataFrame:
        """The recipes that may be run, with their purpose and code hash."""
        infos = [RecipeInfo.model_validate(r) for r in self._request("GET", "/recipes")]
        return pd.DataFrame.from_records(
            [
                {
                    "recipe": r.name,
                    "version": r.version,
                    "title": r.manifest.get("title", ""),
                    "purpose": r.manifest.get("purpose", ""),
                    "params": ", ".join(p["name"] for p in r.manifest.get("params", [])),
                    "code_sha256": r.code_sha256,
                }
                for r in infos
            ]
        )

    def recipe(self, name: str, version: str | None = None) -> RecipeInfo:
        """One recipe with its whole manifest (parameters with types and bounds, outputs)."""
        params = {"version": version} if version else None
        return RecipeInfo.model_validate(self._request("GET", f"/recipes/{name}", params=params))

    # ------------------------------------------------------------------ running

    def submit(
        self,
        recipe: str,
        *,
        version: str | None = None,
        agencies: list[str] | None = None,
        **params: Any,
    ) -> JobView:
        """Queue a job and return at once (``run`` waits for it)."""
        request = JobRequest(recipe=recipe, version=version, params=params, agencies=agencies)
        body = request.model_dump(mode="json", exclude_none=True)
        return JobView.model_validate(self._request("POST", "/jobs", json=body))

    def job(self, job_id: str, *, wait: float = 0.0, until: str = "change") -> JobView:
        """The job's state; ``wait`` long-polls until it changes (``until="final"``: ends)."""
        params = {"wait": wait, "until": until} if wait else None
        return JobView.model_validate(self._request("GET", f"/jobs/{job_id}", params=params))

    def jobs(self) -> pd.DataFrame:
        views = [JobView.model_validate(j) for j in self._request("GET", "/jobs")]
        return pd.DataFrame.from_records(
            [
                {
                    "job_id": v.job_id,
                    "recipe": f"{v.recipe}@{v.version}",
                    "analyst": v.analyst,
                    "state": v.state.value,
                    "created_at": pd.Timestamp(v.created_at, unit="s"),
                    "error": v.error.message if v.error else None,
                }
                for v in views
            ]
        )

    def run(
        self,
        recipe: str,
        *,
        version: str | None = None,
        agencies: list[str] | None = None,
        progress: bool = True,
        timeout: float = 600.0,
        **params: Any,
    ) -> pd.DataFrame:
        """Run a recipe and return its released result as a DataFrame.

        ``df.attrs["provenance"]`` (and ``lab.last_provenance``) say which job, recipe hash and
        nodes produced it and which cells were suppressed. Suppressed cells are NaN/None.
        Raises JobRefused / JobFailed when nothing was released.
        """
        view = self.submit(recipe, version=version, agencies=agencies, **params)
        if not view.tasks:  # a training recipe: nodes take part through Flower, not tasks
            return self._train_wait(view, progress=progress, timeout=timeout)  # type: ignore[return-value]
        view = self._wait(view, progress=progress, timeout=timeout)
        return self._result_frame(view)

    def train(
        self,
        recipe: str = "fl_logistic",
        *,
        version: str | None = None,
        agencies: list[str] | None = None,
        progress: bool = True,
        timeout: float = 1800.0,
        **params: Any,
    ) -> FederatedModel:
        """Train a federated model (a training recipe) and return it with its provenance.

        Shows one progress step per secure round with the aggregate accuracy, loss and how
        many nodes answered. ``model.metrics()`` has them all; ``model.provenance`` says which
        job, FAB hash, nodes, rounds and epsilon.
        """
        view = self.submit(recipe, version=version, agencies=agencies, **params)
        return self._train_wait(view, progress=progress, timeout=timeout)

    def training(self, job_id: str, *, wait: float = 0.0, seen: int = 0) -> TrainingView:
        """A training job's rounds so far (``wait``: until there are more than ``seen``)."""
        params = {"wait": wait, "seen": seen} if wait else None
        body = self._request("GET", f"/jobs/{job_id}/training", params=params)
        return TrainingView.model_validate(body)

    def _train_wait(self, view: JobView, *, progress: bool, timeout: float) -> FederatedModel:
        from datalab.federated_model import FederatedModel

        deadline = time.monotonic() + timeout
        state = self.training(view.job_id)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=state.rounds_planned + 1,
                desc=f"{view.recipe} {view.job_id[:8]}",
                unit="round",
                leave=True,
            )
        try:
            while not state.state.final:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JobFailed(f"job {view.job_id} still training after {timeout}s")
                state = self.training(
                    view.job_id, wait=min(25.0, max(remaining, 0.1)), seen=len(state.rounds)
                )
                if bar is not None and state.rounds:
                    last = state.rounds[-1]
                    bar.n = len(state.rounds)
                    bar.set_postfix(
                        nodes=last.nodes, accuracy=f"{last.accuracy:.3f}", loss=f"{last.loss:.3f}"
                    )
                    bar.refresh()
        finally:
            if bar is not None:
                bar.close()
        final = self.job(view.job_id)
        if final.state is not JobState.RELEASED or final.result is None:
            message = final.error.message if final.error else final.state.value
            raise JobFailed(f"job {view.job_id} failed: {message}")
        assert final.provenance is not None
        values = {row[0]: float(row[1]) for row in final.result.rows}
        features = [str(f) for f in final.params["features"]]
        self.last_provenance = final.provenance
        return FederatedModel(
            features=features,
            intercept=values["intercept"],
            coefficients=np.array([values[f] for f in features]),
            provenance=final.provenance,
            kind=LINEAR_RECIPES.get(final.recipe, "logistic"),
        )

    def _wait(self, view: JobView, *, progress: bool, timeout: float) -> JobView:
        deadline = time.monotonic() + timeout
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=max(len(view.tasks), 1),
                desc=f"{view.recipe} {view.job_id[:8]}",
                unit="node",
                leave=False,
                delay=0.5,
            )
        try:
            while not view.state.final:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JobFailed(f"job {view.job_id} still {view.state.value} after {timeout}s")
                view = self.job(
                    view.job_id,
                    wait=min(25.0, max(remaining, 0.1)),
                    until="change" if bar is not None else "final",
                )
                if bar is not None:
                    _advance(bar, view)
        finally:
            if bar is not None:
                bar.close()
        return view

    def _result_frame(self, view: JobView) -> pd.DataFrame:
        if view.state is JobState.REFUSED:
            message = view.error.message if view.error else "refused"
            raise JobRefused(f"job {view.job_id} refused: {message}")
        if view.state is not JobState.RELEASED or view.result is None:
            message = view.error.message if view.error else view.state.value
            raise JobFailed(f"job {view.job_id} failed: {message}")
        frame = table_to_frame(view.result)
        frame.attrs["provenance"] = view.provenance
        self.last_provenance = view.provenance
        return frame

    # ------------------------------------------------------------------ privacy

    def disclosure_rules(self, recipe: str | None = None) -> pd.DataFrame:
        """Every disclosure setting with its value and default: the lab's defaults, each
        recipe's policy, each agency's settings and each node's minimum cell size. A release
        is made under the strictest value among the recipe and the agencies it touches."""
        params = {"recipe": recipe} if recipe else None
        rules = [
            RuleView.model_validate(r)
            for r in self._request("GET", "/privacy/rules", params=params)
        ]
        return pd.DataFrame.from_records(
            [r.model_dump() for r in rules], columns=list(RuleView.model_fields)
        )

    def budget(self) -> pd.DataFrame:
        """Your differential-privacy budget per dataset: cap, spent and remaining epsilon."""
        views = [BudgetView.model_validate(b) for b in self._request("GET", "/privacy/budget")]
        return pd.DataFrame.from_records(
            [v.model_dump() for v in views], columns=list(BudgetView.model_fields)
        )

    def set_rule(self, agency: str, setting: str, value: Any) -> pd.DataFrame:
        """(Agency admins) set one disclosure setting for your agency's data."""
        body = RuleUpdate(setting=setting, value=value).model_dump(mode="json")
        rules = [
            RuleView.model_validate(r)
            for r in self._request("PUT", f"/privacy/rules/{agency}", json=body)
        ]
        return pd.DataFrame.from_records(
            [r.model_dump() for r in rules], columns=list(RuleView.model_fields)
        )

    def set_budget(self, scope: str, epsilon: float, analyst: str = "*") -> BudgetView:
        """(Agency admins) cap an analyst's (or every analyst's, ``*``) epsilon on a scope."""
        body = BudgetCapUpdate(scope=scope, analyst=analyst, epsilon=epsilon)
        return BudgetView.model_validate(
            self._request("PUT", "/privacy/budget", json=body.model_dump(mode="json"))
        )

    # ------------------------------------------------------------------ auditing

    def audit(self, *, after: int = 0, page: int = 5000, **filters: Any) -> pd.DataFrame:
        """The hub's audit log from entry ``after`` on, every page of it (auditors only).

        Filters (any of ``analyst``, ``agency``, ``recipe``, ``outcome``, ``since``, ``until``)
        are applied by the hub; see ``lab_server.audit_filter``."""
        entries = self.audit_entries(after=after, page=page, **filters)
        return pd.DataFrame.from_records(
            [e.model_dump() for e in entries],
            columns=list(AuditEntry.model_fields),
        )

    def audit_entries(
        self, *, after: int = 0, page: int = 5000, **filters: Any
    ) -> list[AuditEntry]:
        entries: list[AuditEntry] = []
        while True:
            params = {"after": after, "limit": page, **filters}
            batch = [
                AuditEntry.model_validate(e) for e in self._request("GET", "/audit", params=params)
            ]
            entries.extend(batch)
            if len(batch) < page:
                return entries
            after = batch[-1].seq

    def audit_checkpoints(self) -> list[SignedCheckpoint]:
        return [
            SignedCheckpoint.model_validate(c) for c in self._request("GET", "/audit/checkpoints")
        ]

    def hub_public_key(self) -> str:
        return str(self._request("GET", "/hub")["public_key"])

    def verify_audit(self) -> dict[str, Any]:
        return self._request("GET", "/audit/verify")

    # ------------------------------------------------------------------ approvals

    def request_approval(
        self,
        recipe: str,
        *,
        agencies: list[str],
        purpose: str,
        bounds: dict[str, dict[str, Any]] | None = None,
        version: str | None = None,
    ) -> ApprovalRequestView:
        """Ask the agencies' admins to approve ``recipe`` within ``bounds`` for ``purpose``."""
        body = ApprovalRequestIn(
            recipe=recipe, version=version, agencies=agencies, bounds=bounds or {}, purpose=purpose
        )
        return ApprovalRequestView.model_validate(
            self._request("POST", "/approval-requests", json=body.model_dump(mode="json"))
        )

    def approval_requests(self) -> list[ApprovalRequestView]:
        return [
            ApprovalRequestView.model_validate(r)
            for r in self._request("GET", "/approval-requests")
        ]

    def approval_request(self, request_id: str) -> ApprovalRequestView:
        return ApprovalRequestView.model_validate(
            self._request("GET", f"/approval-requests/{request_id}")
        )

    def review(self, request_id: str) -> ApprovalReview:
        """Code, manifest and mock output of a request (agency admins of an involved agency)."""
        return ApprovalReview.model_validate(
            self._request("GET", f"/approval-requests/{request_id}/review")
        )

    def approve(self, request_id: str, signed: SignedApproval) -> AgencyDecision:
        """Upload a grant signed with the agency key (see ``datalab approvals approve``)."""
        return AgencyDecision.model_validate(
            self._request(
                "POST",
                f"/approval-requests/{request_id}/approvals",
                json=signed.model_dump(mode="json"),
            )
        )

    def reject(self, request_id: str, reason: str) -> AgencyDecision:
        return AgencyDecision.model_validate(
            self._request(
                "POST", f"/approval-requests/{request_id}/rejections", json={"reason": reason}
            )
        )

    def revoke(self, signed: SignedRevocation) -> None:
        self._request("POST", "/revocations", json=signed.model_dump(mode="json"))

    def grant(self, approval_id: str) -> SignedApproval:
        return SignedApproval.model_validate(self._request("GET", f"/approvals/{approval_id}"))


def table_to_frame(table: Table) -> pd.DataFrame:
    """A released table as a DataFrame; counts with suppressed cells stay integers (``<NA>``)."""
    frame = pd.DataFrame.from_records(table.rows, columns=table.columns)
    for i, name in enumerate(table.columns):
        values = [row[i] for row in table.rows if row[i] is not None]
        if len(values) < len(table.rows) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            frame[name] = pd.array([row[i] for row in table.rows], dtype="Int64")
    return frame


def _advance(bar: Any, view: JobView) -> None:
    """Move the bar: a running match's chunks done / total (the asking node reports them),
    otherwise the nodes that answered."""
    if view.progress is not None:
        bar.unit = "chunk"
        bar.total = view.progress.total
        bar.n = view.progress.done
    elif bar.unit == "chunk":  # the match reported progress before; the job has moved on
        bar.n = bar.total if view.state.final else bar.n
    else:
        bar.n = sum(t.state.value not in ("issued", "delivered") for t in view.tasks)
    bar.set_postfix_str(view.state.value)
    bar.refresh()
