"""Where the Flower runtime lives and how its processes are started.

Flower 1.42 pins a web stack (FastAPI < 0.139, Starlette 1.3, uvicorn 0.49, pycryptodome < 4)
that the lab's own pins do not allow, so Flower runs in its own environment, ``.venv-flower``
beside ``.venv`` (``scripts/setup`` builds it from ``scripts/flower-requirements.txt``). Lab code
never imports ``flwr``: the hub and the nodes start Flower's programs from that environment
(SuperLink, SuperNode, the node's gate, the ``flwr`` CLI) and talk to them through files, command
lines and JSON. This module is the one place that knows the way there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from datalab.errors import DatalabError

#: the environment variable that points at another Flower runtime's ``bin`` folder.
BIN_ENV = "DATALAB_FLOWER_BIN"

#: what every Flower process gets: no telemetry, no update check (no network), fast polling.
QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
    "PYTHONUNBUFFERED": "1",
}


class FlowerMissing(DatalabError):
    """The Flower runtime is not installed where the lab looks for it."""


def flower_bin(configured: Path | None = None) -> Path:
    """The ``bin`` folder of the Flower runtime: the setting, ``$DATALAB_FLOWER_BIN``, or
    ``.venv-flower/bin`` next to the lab's own virtual environment."""
    if configured is not None:
        found = Path(configured)
    elif os.environ.get(BIN_ENV):
        found = Path(os.environ[BIN_ENV])
    else:
        found = Path(sys.prefix).parent / ".venv-flower" / "bin"
    if not (found / "flower-superlink").exists():
        raise FlowerMissing(
            f"no Flower runtime at {found}: run scripts/setup (it builds .venv-flower) or set "
            f"{BIN_ENV}"
        )
    return found


def flower_env(bin_dir: Path, flwr_home: Path | None = None) -> dict[str, str]:
    """The environment of a Flower process: Flower's ``bin`` first on PATH (its programs start
    each other by name), quiet, and its own ``FLWR_HOME`` when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
    env.update(QUIET_ENV)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


_FAB_HASH = """
import hashlib, sys
from pathlib import Path
from flwr.cli.build import build_fab_from_disk
print(hashlib.sha256(build_fab_from_disk(Path(sys.argv[1]))).hexdigest())
"""


def fab_sha256(app_dir: Path, bin_dir: Path | None = None) -> str:
    """The sha256 of the FAB Flower builds from ``app_dir`` — what ``flwr run`` uploads and what
    each SuperNode is asked to run. Flower's builder is reproducible (fixed zip dates, sorted
    files), so the same sources give the same hash on the hub and on every node."""
    return _fab_sha256(str(Path(app_dir).resolve()), _sources_digest(app_dir), str(bin_dir or ""))


@functools.lru_cache(maxsize=32)
def _fab_sha256(app_dir: str, sources: str, bin_dir: str) -> str:
    """Built once per set of sources: the result is kept in the Flower runtime's folder (whoever
    can write there can change Flower itself), since importing Flower's builder takes seconds."""
    python = flower_bin(Path(bin_dir) if bin_dir else None) / "python"
    cache = python.parent.parent / "fab-hashes" / sources
    if cache.exists():
        return cache.read_text(encoding="utf-8").strip()
    done = subprocess.run(
        [str(python), "-c", _FAB_HASH, app_dir],
        capture_output=True,
        text=True,
        env=flower_env(python.parent),
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise FlowerMissing(f"could not build the Flower app {app_dir}: {done.stderr[-500:]}")
    found = done.stdout.strip()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(found, encoding="utf-8")
    tmp.replace(cache)
    return found


def _sources_digest(app_dir: Path) -> str:
    """A digest of the app's files (cache key: edit a file, get a fresh FAB hash)."""
    h = hashlib.sha256()
    for path in sorted(Path(app_dir).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(app_dir)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def stage_app(name: str, files: Mapping[str, Path], bin_dir: Path | None = None) -> Path:
    """A Flower app folder holding exactly ``files`` (path inside the app → source file), for an
    app assembled from more than one folder of the repository (Flower builds FABs from one
    folder and skips symlinks). Staged once per content under the Flower runtime's folder, next
    to the FAB hashes cached there, and never changed after: a new content is a new folder."""
    h = hashlib.sha256()
    for rel, path in sorted(files.items()):
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    root = flower_bin(bin_dir).parent / "staged-apps"
    target = root / f"{name}-{h.hexdigest()[:24]}"
    if target.exists():
        return target
    tmp = root / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, path in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, tmp / rel)
    try:
        tmp.rename(target)
    except OSError:  # another process staged the same content first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def stop_group(*procs: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM each Flower process's group, then SIGKILL what is left after ``grace`` seconds:
    a SuperNode or SuperLink can take seconds to exit, and its children (SuperExec, app
    processes) must not outlive it. Flower processes are started with
    ``start_new_session=True``, so each leads its own group."""
    for proc in procs:
        kill_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
    for proc in procs:
        kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
