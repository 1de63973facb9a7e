"""The node's one validated settings object (environment prefix ``DATALAB_NODE_``).

Settings are read once, validated here, and passed to every component, so no module reads the
environment on its own and a production start with a development secret fails loudly at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datalab.geography import Level

#: The enrolment token a development hub accepts; refused in production.
DEV_ENROLMENT_TOKEN = "dev-enrolment-token"

#: Agency names end up in file paths and URL paths, so they are restricted to a safe alphabet.
AGENCY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

KEY_FILE = "node_key.pem"
HUB_KEY_FILE = "hub_key.pub"
NONCES_FILE = "nonces.sqlite"
LOG_FILE = "node-log.jsonl"


def default_state_dir(agency: str) -> Path:
    """Where a node keeps its key, approvals, nonces and log unless told otherwise."""
    return Path("var") / f"node-{agency}"


class StateSettings(BaseSettings):
    """What the admin commands (approve, revoke, log) need: which agency and where its state is.

    Kept apart from :class:`NodeSettings` so an admin can manage approvals without a data folder
    or a hub address.
    """

    model_config = SettingsConfigDict(env_prefix="DATALAB_NODE_", extra="ignore")

    agency: str = Field(pattern=AGENCY_PATTERN)
    state_dir: Path | None = None
    environment: Literal["development", "production"] = "development"

    @model_validator(mode="after")
    def _default_state_dir(self) -> Self:
        if self.state_dir is None:
            self.state_dir = default_state_dir(self.agency)
        return self

    @property
    def state(self) -> Path:
        """The state folder (never None after validation)."""
        assert self.state_dir is not None
        return self.state_dir

    @property
    def key_path(self) -> Path:
        return self.state / KEY_FILE

    @property
    def hub_key_path(self) -> Path:
        return self.state / HUB_KEY_FILE

    @property
    def nonces_path(self) -> Path:
        return self.state / NONCES_FILE

    @property
    def log_path(self) -> Path:
        return self.state / LOG_FILE

    @property
    def verification_dir(self) -> Path:
        """Owner-only reveal lists (one Parquet file per job), for the agency's grid workers."""
        return self.state / "verification"


class NodeSettings(StateSettings):
    """Everything a running node agent needs."""

    #: the agency folder holding manifest.json and the datasets it names.
    data_dir: Path
    hub_url: str = "http://127.0.0.1:8000"
    enrolment_token: str = DEV_ENROLMENT_TOKEN
    #: the hub's Ed25519 public key (hex). Required in production; in development, when unset,
    #: the key is fetched on first start and pinned in state_dir/hub_key.pub (trust on first use).
    hub_public_key: str | None = None
    #: this agency's minimum cell size and minimum query-set size.
    min_cell: int = Field(default=10, ge=1)
    #: the finest area level a geographic quasi-identifier may be grouped at.
    finest_level: Level = "grid"
    #: seconds a task long-poll waits at the hub (the hub caps it at 30).
    poll_wait_s: float = Field(default=20.0, gt=0, le=30)
    #: DuckDB worker threads (default: all cores).
    duckdb_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    #: tasks of one poll that may run at the same time.
    max_concurrent_tasks: int = Field(default=2, ge=1, le=16)
    #: answering PSI: the smallest client set (per group) this node matches against.
    psi_min_set: int = Field(default=20, ge=1)
    #: answering PSI: a client set differing from an earlier one from the same agency by at
    #: least 1 and fewer than this many items is refused (differencing attack).
    psi_min_change: int = Field(default=10, ge=1)
    #: processes for the PSI curve work (default: all cores).
    psi_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)

    #: federated training (docs/federated.md): the hub's SuperLink address (host:port). Set, the
    #: node starts and supervises a Flower SuperNode and the gate that runs approved apps only.
    flower_superlink: str | None = None
    #: the SuperNode's local runtime API port (one per SuperNode on a host); 0: a free port.
    flower_port: int = Field(default=0, ge=0, le=65535)
    #: the Flower runtime's bin folder (default: .venv-flower/bin beside the lab's venv).
    flower_bin: Path | None = None
    #: the CA certificate the SuperLink's TLS certificate must chain to (None: insecure).
    flower_root_certificates: Path | None = None
    #: the SuperNode's ECDSA P-384 private key, registered at the SuperLink (node auth).
    flower_auth_key: Path | None = None
    #: test hook: a folder (in this node's domain) where the ClientApp keeps a copy of each
    #: plain update, so the attack tests can look for it at the hub. Never set in production.
    flower_record_updates: Path | None = None

    @field_validator("hub_url")
    @classmethod
    def _hub_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("hub_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("hub_public_key")
    @classmethod
    def _hub_key(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("hub_public_key must be 64 hex characters (a raw Ed25519 key)")
        return value

    @model_validator(mode="after")
    def _production_refuses_dev_defaults(self) -> Self:
        if self.environment == "production":
            if self.enrolment_token == DEV_ENROLMENT_TOKEN:
                raise ValueError(
                    "production refuses the development enrolment token; "
                    "set DATALAB_NODE_ENROLMENT_TOKEN to the hub's token"
                )
            if self.hub_public_key is None:
                raise ValueError(
                    "production needs the hub's public key pinned: set DATALAB_NODE_HUB_PUBLIC_KEY"
                )
            if not self.hub_url.startswith("https://"):
                raise ValueError("production talks to the hub over https:// only")
            if self.flower_superlink and not (
                self.flower_root_certificates and self.flower_auth_key
            ):
                raise ValueError(
                    "production joins the SuperLink over TLS with node authentication: set "
                    "DATALAB_NODE_FLOWER_ROOT_CERTIFICATES and DATALAB_NODE_FLOWER_AUTH_KEY"
                )
        return self
