"""Which hub key this node trusts.

Tasks are only as trustworthy as the key that signs them, so the node pins one: configured
(``hub_public_key``; required in production) or, in development only, fetched on first start and
written to ``state_dir/hub_key.pub`` (trust on first use). Once pinned, a hub presenting another
key is refused loudly — that is either a re-installed hub (an operator removes the pin on purpose)
or someone in the middle.
"""

from __future__ import annotations

from node_agent.settings import NodeSettings


class HubKeyMismatch(Exception):
    """The hub presented a key other than the pinned one. Never retried automatically."""


def read_pinned(settings: NodeSettings) -> str | None:
    try:
        return settings.hub_key_path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def pin(settings: NodeSettings, key: str) -> None:
    settings.hub_key_path.parent.mkdir(parents=True, exist_ok=True)
    settings.hub_key_path.write_text(key + "\n", encoding="ascii")


def trusted_key(settings: NodeSettings) -> str | None:
    """The key to trust without asking the hub: configured (and then pinned), else pinned.

    None means this is a development node's first start: the caller fetches the hub's key and
    pins it with :func:`pin_first_use`.
    """
    pinned = read_pinned(settings)
    if settings.hub_public_key is not None:
        if pinned != settings.hub_public_key:
            pin(settings, settings.hub_public_key)
        return settings.hub_public_key
    return pinned


def pin_first_use(settings: NodeSettings, offered: str) -> str:
    """Trust-on-first-use, development only: pin the key the hub presented."""
    if settings.environment == "production":  # settings refuse this already; belt and braces
        raise HubKeyMismatch("production needs DATALAB_NODE_HUB_PUBLIC_KEY")
    key = offered.strip().lower()
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise HubKeyMismatch("the hub presented a malformed public key")
    pin(settings, key)
    return key


def check_offered(pinned: str, offered: str, where: str) -> None:
    """Refuse loudly when the hub presents a key other than the pinned one."""
    if offered.strip().lower() != pinned:
        raise HubKeyMismatch(
            f"the hub's public key ({where}: {offered[:16]}…) differs from the pinned key "
            f"({pinned[:16]}…). Refusing to talk to it. If the hub was really re-installed, "
            "remove hub_key.pub from the node's state folder (or set the new key) and restart."
        )
