"""Wire types shared by hub, node and client: the only definition of what crosses HTTP.

Tables travel column-named and row-major (``columns`` + ``rows``): results are aggregates, so
they are small, and this keeps them readable in logs and trivially loadable into pandas.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from datalab.manifest import ColumnSpec


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Table(Wire):
    columns: list[str]
    rows: list[list[Any]]


# ---------------------------------------------------------------- catalogue (never rows)


class CatalogueDataset(Wire):
    name: str
    kind: str
    rows: int
    description: str = ""
    refreshed_at: float
    columns: list[ColumnSpec]


class NodeRegistration(Wire):
    """Sent by a node when it starts; signed with the node's key (``signature``)."""

    agency: str
    public_key: str
    version: str
    min_cell: int
    datasets: list[CatalogueDataset]


class SignedRegistration(Wire):
    registration: NodeRegistration
    signature: str


class RegistrationAccepted(Wire):
    agency: str
    hub_public_key: str


class AgencyCatalogue(Wire):
    agency: str
    status: Literal["online", "offline"]
    last_seen: float | None
    version: str
    datasets: list[CatalogueDataset]


class HubInfo(Wire):
    version: str
    public_key: str


# ---------------------------------------------------------------- tasks (hub → node)


class Task(Wire):
    """One node's share of a job. Signed by the hub; the node re-checks everything in it."""

    task_id: str
    job_id: str
    agency: str
    dataset: str
    recipe: str
    version: str
    code_sha256: str
    params: dict[str, Any]
    issued_at: float
    expires_at: float
    nonce: str
    #: query auditing (non-DP recipes): the filters and group keys of the queries this analyst
    #: was already released on this dataset; the node answers with atom counts over them.
    audit: list[dict[str, Any]] | None = None
    #: matching jobs: the agencies of the job's tasks, the asking one (the PSI client) first,
    #: then the answering ones; each node addresses its relay messages with these ([]: not PSI).
    peers: list[str] = Field(default_factory=list)


class SignedTask(Wire):
    task: Task
    signature: str


class PartialStatus(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    FAILED = "failed"


class Partial(Wire):
    """A node's answer to a task: an aggregate table, or a refusal/failure with its reason."""

    task_id: str
    job_id: str
    agency: str
    code_sha256: str
    status: PartialStatus
    reason: str | None = None
    table: Table | None = None
    #: the node's own minimum cell size; the hub releases nothing below the largest of these.
    min_cell: int
    #: rows of the node's dataset that the query touched (its query-set size).
    query_set_size: int | None = None
    computed_at: float
    seconds: float = 0.0
    #: query auditing: atom counts over this plan and the task's earlier plans (hub only).
    audit_atoms: Table | None = None


class SignedPartial(Wire):
    partial: Partial
    signature: str


# ---------------------------------------------------------------- jobs (analyst ↔ hub)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMBINED = "combined"
    RELEASED = "released"
    FAILED = "failed"
    REFUSED = "refused"

    @property
    def final(self) -> bool:
        return self in (JobState.RELEASED, JobState.FAILED, JobState.REFUSED)


class TaskState(StrEnum):
    ISSUED = "issued"
    DELIVERED = "delivered"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


class JobRequest(Wire):
    recipe: str
    version: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    #: restrict the job to these agencies' nodes (default: every node holding the data).
    agencies: list[str] | None = None


class TaskView(Wire):
    agency: str
    dataset: str
    state: TaskState
    reason: str | None = None


class Provenance(Wire):
    job_id: str
    recipe: str
    version: str
    code_sha256: str
    params: dict[str, Any]
    agencies: list[str]
    missing_agencies: list[str] = Field(default_factory=list)
    min_cell: int
    suppressed_cells: int
    #: how cells were withheld, e.g. "primary: below 10", "complementary: grid siblings".
    suppression: list[str] = Field(default_factory=list)
    released_at: float
    result_sha256: str
    #: the disclosure rules the result was released under (``recipes/rules.py``).
    rules: dict[str, Any] = Field(default_factory=dict)
    #: differential privacy: the epsilon this job spent from each dataset's budget (None: no DP).
    epsilon: float | None = None
    #: federated training: the Flower run and the aggregate metrics of each round.
    run_id: str | None = None
    rounds: list[TrainingRound] = Field(default_factory=list)


class ErrorInfo(Wire):
    code: str
    message: str


class JobView(Wire):
    job_id: str
    recipe: str
    version: str
    code_sha256: str
    params: dict[str, Any]
    analyst: str
    state: JobState
    created_at: float
    updated_at: float
    tasks: list[TaskView]
    error: ErrorInfo | None = None
    result: Table | None = None
    provenance: Provenance | None = None
    #: a matching job's progress while it runs (the asking node's chunks done / total)
    progress: PsiProgress | None = None


class RecipeInfo(Wire):
    name: str
    version: str
    code_sha256: str
    manifest: dict[str, Any]


class AuditEntry(Wire):
    seq: int
    ts: float
    event: str
    actor: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


# ---------------------------------------------------------------- privacy (rules, budgets)


class RuleView(Wire):
    """One disclosure setting as it applies in one scope (``lab``, ``recipe:<name@version>``
    or ``agency:<name>``), with the lab's default beside it."""

    scope: str
    setting: str
    value: Any
    default: Any
    description: str


class RuleUpdate(Wire):
    setting: str
    value: Any


class BudgetView(Wire):
    """An analyst's privacy budget on one scope (``dataset:<agency>/<name>``)."""

    analyst: str
    scope: str
    cap: float
    spent: float
    remaining: float


class BudgetCapUpdate(Wire):
    scope: str
    #: one analyst, or ``*`` for every analyst without their own cap.
    analyst: str = "*"
    epsilon: float = Field(ge=0, le=1000, allow_inf_nan=False)


# ---------------------------------------------------------------- approvals (agency-signed)


class ApprovalGrant(Wire):
    """An agency's decision to let one recipe version run on its data, within bounds.

    Signed with the agency's own key (not the node's, not the hub's): the node refuses any task
    whose recipe@version, code hash and parameters are not covered by a grant that verifies.
    """

    approval_id: str
    agency: str
    recipe: str
    version: str
    code_sha256: str
    #: per parameter: {"minimum": x, "maximum": y, "choices": [...]} (any subset).
    bounds: dict[str, dict[str, Any]] = Field(default_factory=dict)
    issued_at: float
    approved_by: str
    #: the hub's approval request this answers (None for a local approval).
    request_id: str | None = None
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.recipe}@{self.version}"


class SignedApproval(Wire):
    grant: ApprovalGrant
    signature: str


class Revocation(Wire):
    """An agency withdrawing one grant (by its id); signed with the agency key like the grant."""

    approval_id: str
    agency: str
    recipe: str
    version: str
    revoked_at: float
    revoked_by: str
    reason: str = ""


class SignedRevocation(Wire):
    revocation: Revocation
    signature: str


class AgencyApprovals(Wire):
    """What a node pulls from the hub: every signed grant and revocation for its agency."""

    approvals: list[SignedApproval] = Field(default_factory=list)
    revocations: list[SignedRevocation] = Field(default_factory=list)


class AgencyKey(Wire):
    """A node telling the hub which agency key signs its approvals (the hub checks uploads)."""

    public_key: str


class ApprovalRequestIn(Wire):
    """An analyst asking to use a recipe on named agencies' data, within bounds, for a purpose."""

    recipe: str
    version: str | None = None
    agencies: list[str]
    bounds: dict[str, dict[str, Any]] = Field(default_factory=dict)
    purpose: str


class DecisionState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKED = "revoked"


class AgencyDecision(Wire):
    agency: str
    state: DecisionState
    by: str | None = None
    at: float | None = None
    reason: str | None = None
    bounds: dict[str, dict[str, Any]] | None = None
    approval_id: str | None = None


class ApprovalRequestView(Wire):
    request_id: str
    analyst: str
    recipe: str
    version: str
    code_sha256: str
    agencies: list[str]
    bounds: dict[str, dict[str, Any]]
    purpose: str
    created_at: float
    decisions: list[AgencyDecision]


class Rejection(Wire):
    reason: str


class ApprovalReview(Wire):
    """What an agency admin reviews: the request, the recipe's code and manifest, and its output
    on mock data of the agency's schema (None, with ``mock_note`` saying why, if there is none)."""

    request: ApprovalRequestView
    code: str
    manifest: dict[str, Any]
    mock: Table | None = None
    mock_note: str = ""


# ---------------------------------------------------------------- audit transparency


class Checkpoint(Wire):
    """The hub's signed statement of its audit log: tree size and Merkle root (RFC 9162)."""

    tree_size: int
    root_hash: str
    issued_at: float


class SignedCheckpoint(Wire):
    checkpoint: Checkpoint
    signature: str


class AuditReceipt(Wire):
    """What a node gets back for a posted partial: its log entry, proof and checkpoints."""

    entry: AuditEntry
    leaf_index: int
    inclusion: list[str]
    checkpoint: SignedCheckpoint
    #: proof that ``checkpoint`` extends the tree size the node said it last saw ([] if none).
    consistency: list[str] = Field(default_factory=list)
    since: int = 0


# ---------------------------------------------------------------- PSI relay (node ↔ hub ↔ node)


class PsiMessage(Wire):
    """One message of a private-set-intersection run, relayed by the hub between the two tasks
    of a matching job. ``body`` is a serialized openmined-psi message (base64): blinded curve
    points or the server's setup, never identifiers. ``digests`` (client requests only) are
    8-byte digests keyed with a secret of the client node, for the answering node's
    minimum-change rule. The hub sets ``seq`` and ``sender``; it keeps messages only until the
    job ends and never logs them."""

    kind: Literal["terms", "hello", "setup", "request", "response", "refused"]
    unit: int = 0
    part: int = 0
    meta: dict[str, Any] = Field(default_factory=dict)
    body: str = ""
    digests: str = ""
    seq: int = 0
    sender: str = ""
    #: the receiving agency (one of the task's ``peers``); "" in a two-task job: the other task
    to: str = ""


class PsiProgress(Wire):
    """How far the asking node of a matching job is: chunks of blinded points sent and answered,
    out of all. Counts only; the hub keeps the latest on the job (``JobView.progress``) while
    it runs."""

    done: int = Field(ge=0)
    total: int = Field(ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _done_within_total(self) -> PsiProgress:
        if self.done > self.total:
            raise ValueError("done must not exceed total")
        return self


class PsiPosted(Wire):
    seq: int


# ---------------------------------------------------------------- federated training (Flower)


class TrainingRound(Wire):
    """One secure round of a Flower run, as the hub saw it: only aggregates. ``accuracy`` and
    ``loss`` are those of the model that entered the round, over all answering nodes' rows
    (SecAgg+ sums them with the updates); the last round (``evaluation_only``) takes no training
    step and measures the final model."""

    round: int
    evaluation_only: bool = False
    nodes: int
    failures: int = 0
    accuracy: float
    loss: float
    seconds: float


class FlowerRefusal(Wire):
    """A node's gate refused a Flower app: its FAB hash is not approved by the agency. Posted by
    the node agent (signed) — Flower's server sees only a node that does not answer."""

    run_id: str
    fab_sha256: str
    reason: str
    at: float


class TrainingView(Wire):
    """A training job's progress: the rounds so far and the refusals reported."""

    job_id: str
    state: JobState
    run_id: str | None = None
    fab_sha256: str
    rounds_planned: int
    rounds: list[TrainingRound] = Field(default_factory=list)
    refusals: list[dict[str, Any]] = Field(default_factory=list)


# the rounds of a training job travel in its provenance (defined above these classes)
Provenance.model_rebuild()
JobView.model_rebuild()


class ModelFile(Wire):
    """A released federated model as a file (``FederatedModel.save``): what an analyst or the
    hub hands a district so its node can rank the district's own list
    (``datalab node rank``). Coefficients, terms and provenance only — no row, no identifier."""

    format: Literal["datalab-model/1"] = "datalab-model/1"
    #: a Flower app folder under ``recipes/flower`` (a plain name: never a path)
    app: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["logistic", "linear"]
    #: the model's terms (``recipes/flower/<app>/…/model.py``), one weight each after the intercept
    features: list[str] = Field(min_length=1)
    #: ``[intercept, one coefficient per feature]``
    weights: list[float]
    provenance: Provenance

    @model_validator(mode="after")
    def _one_weight_per_term(self) -> ModelFile:
        if len(self.weights) != len(self.features) + 1:
            raise ValueError(
                f"{len(self.weights)} weights for {len(self.features)} features "
                "(expected an intercept and one per feature)"
            )
        return self
