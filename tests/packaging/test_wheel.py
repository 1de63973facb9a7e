"""The product installs from a wheel, not only from a source checkout.

A user who runs ``pip install datalab-*.whl`` gets every package and every file the lab needs at
run time: the command, the synthetic city, the console's templates, and the Flower apps'
``pyproject.toml`` files (without them Flower cannot build a training recipe's FAB, so its code
hash — what an approval pins — could not be computed). The test builds the wheel, installs it
into a fresh virtual environment with no access to this checkout, and uses it from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from datalab.flower_runtime import FlowerMissing, flower_bin

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy: pip builds in the source tree, and the checkout must stay as it is
    source = tmp_path_factory.mktemp("source") / "datalab"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "*.egg-info", "__pycache__", "tests", "var", "demo-*"
        ),
    )
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("datalab-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel; third-party packages come from this venv's site-packages
    (a plain path entry: its ``.pth`` files, the editable install among them, are not run)."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "zz_lab_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*PIP, "--python", str(python), "install", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return env_dir


def _run(env_dir: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        list(args), cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=300
    )


def test_the_wheel_carries_the_flower_apps_project_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for app in ("fl_logistic", "fl_linear"):
        assert f"recipes/flower/{app}/pyproject.toml" in names
    assert "recipes/flower/fl_logistic/fl_logistic_app/model.py" in names
    assert "lab_server/console/templates/base.html" in names
    assert any(n.startswith("synthetic_city/") for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_the_installed_command_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    where = _run(
        installed,
        str(installed / "bin" / "python"),
        "-c",
        "import datalab_cli, recipes; print(datalab_cli.__file__); print(recipes.__file__)",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    assert all(str(installed) in line for line in where.stdout.split()), where.stdout
    helped = _run(installed, str(installed / "bin" / "datalab"), "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "synth" in helped.stdout and "server" in helped.stdout
    made = _run(
        installed,
        str(installed / "bin" / "datalab"),
        "synth",
        *("--people", "600", "--seed", "3", "--out", str(tmp_path / "city")),
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "city" / "truth").is_dir()


def test_a_federated_recipe_hashes_the_same_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    try:
        bin_dir = flower_bin()
    except FlowerMissing:
        pytest.skip("no Flower runtime (scripts/setup builds .venv-flower)")
    from recipes.registry import default_registry

    expected = default_registry().get("fl_logistic").code_sha256()
    hashed = _run(
        installed,
        str(installed / "bin" / "python"),
        "-c",
        "from recipes.registry import default_registry; "
        "print(default_registry().get('fl_logistic').code_sha256())",
        cwd=tmp_path,
        DATALAB_FLOWER_BIN=str(bin_dir),
    )
    assert hashed.returncode == 0, hashed.stderr
    assert hashed.stdout.strip() == expected
