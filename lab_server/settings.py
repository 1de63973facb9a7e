"""The hub's one validated settings object.

Everything configurable lives here, read from ``DATALAB_HUB_*`` environment variables or passed
in by the CLI and tests, so nothing else in the hub reads the environment. A production hub with
a development secret refuses to be constructed: failing at start beats a hub anyone can enrol in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ENROLMENT_TOKEN = "dev-enrolment-token"
#: The shortest enrolment token a production hub accepts.
MIN_SECRET_LENGTH = 16


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATALAB_HUB_", extra="forbid")

    environment: Literal["development", "production"] = "development"
    #: where the hub keeps its database (by default) and its signing key.
    state_dir: Path = Path("var/hub")
    #: SQLAlchemy URL; default ``sqlite:///<state_dir>/hub.db``. PostgreSQL:
    #: ``postgresql+psycopg://user:password@host:port/db``.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    #: the shared secret a node presents once, at registration.
    enrolment_token: str = DEV_ENROLMENT_TOKEN
    #: how long a node has to answer a task before it is timed out.
    node_timeout_s: float = Field(60.0, gt=0)
    #: the largest request body accepted (bytes).
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    #: the longest a long-poll may wait (seconds).
    long_poll_max_s: float = Field(30.0, ge=0)
    #: federated training (docs/federated.md): start and supervise a Flower SuperLink.
    flower: bool = False
    #: the SuperLink's one HTTP port (Fleet, Control and runtime APIs); 0: a free port.
    flower_port: int = Field(0, ge=0, le=65535)
    #: the address SuperNodes are told to reach (default: host:flower_port).
    flower_public_address: str = ""
    #: the Flower runtime's bin folder (default: .venv-flower/bin beside the lab's venv).
    flower_bin: Path | None = None
    #: seconds each SecAgg+ stage waits for nodes before going on without them.
    flower_round_timeout_s: float = Field(60.0, gt=0)
    #: TLS for the SuperLink (all three, or none: insecure, development only).
    flower_ssl_ca_certfile: Path | None = None
    flower_ssl_certfile: Path | None = None
    flower_ssl_keyfile: Path | None = None
    #: accept only SuperNodes whose public keys were registered (``flwr supernode register``).
    flower_supernode_auth: bool = False
    #: a folder of SuperNode public keys (``<agency>.pub``, OpenSSH ECDSA P-384) the hub
    #: registers with its SuperLink at start (with supernode auth: the nodes allowed to join).
    flower_supernode_keys: Path | None = None

    @model_validator(mode="after")
    def _defaults_and_secrets(self) -> HubSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.state_dir / 'hub.db'}"
        if self.environment == "production":
            if self.enrolment_token == DEV_ENROLMENT_TOKEN:
                raise ValueError(
                    "DATALAB_HUB_ENROLMENT_TOKEN is the development default; a production hub "
                    "needs its own secret, e.g. "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
            if self.flower and not self.flower_tls:
                raise ValueError(
                    "a production hub runs its Flower SuperLink over TLS with SuperNode "
                    "authentication: set DATALAB_HUB_FLOWER_SSL_CA_CERTFILE, _SSL_CERTFILE, "
                    "_SSL_KEYFILE and DATALAB_HUB_FLOWER_SUPERNODE_AUTH=true"
                )
            if self.flower and not self.flower_supernode_auth:
                raise ValueError(
                    "a production SuperLink must authenticate SuperNodes: set "
                    "DATALAB_HUB_FLOWER_SUPERNODE_AUTH=true and register each node's key"
                )
            if len(self.enrolment_token) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"DATALAB_HUB_ENROLMENT_TOKEN must be at least {MIN_SECRET_LENGTH} characters "
                    "in production"
                )
        return self

    @property
    def flower_tls(self) -> bool:
        return all((self.flower_ssl_ca_certfile, self.flower_ssl_certfile, self.flower_ssl_keyfile))

    @property
    def hub_key_path(self) -> Path:
        """The hub's Ed25519 signing key (PEM, mode 0600), created on first start."""
        return self.state_dir / "hub_key.pem"
