"""A production install for benchmarks: a virtual environment holding exactly the project's
runtime dependencies (pyproject.toml's `[project] dependencies`, no extras) and the checkout's
current source installed as a wheel would be, like the image (Dockerfile) and unlike the
development venv (`pip install -e .[dev]`, whose extras bring trio, rich and pygments, which
httpx imports whenever they are installed).

Where: `bench/.prod-venv/` (gitignored; under bench/ because the Docker build context already
leaves bench/ out, and a venv at the root would be sent to the daemon with every `docker build`).

Built once and reused; rebuilt when pyproject.toml's sha256 or the base interpreter changes (the
stamp file `.bench-stamp`, as bin/setup keeps one). The packages the pins leave open (the
dependencies' own dependencies) are pinned to the versions the development venv holds (its
`pip freeze`, as constraints), so that the two venvs differ only by the dev extras. The build
backend (pyproject's `[build-system] requires`) is installed too, as the image's venv holds pip
and setuptools.

The source: installed non-editable (`pip install --no-deps --no-build-isolation
--force-reinstall`) from a fresh copy of pyproject.toml, README.md and src/ (what the Dockerfile
copies; a fresh copy because setuptools' build/ directory would carry deleted modules into the
wheel), whenever the sha256 of those files differs from the last install's (`.bench-source`):
about 2 s. Not `src` on the path: the installed package is what an operator runs (site-packages
after the standard library, the package metadata that `--version` reads, the `torghut` console
script), and an install this fast costs nothing worth saving.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "bench" / ".prod-venv"
LOCK = ROOT / "bench" / ".prod-venv.lock"
STAMP = ".bench-stamp"
SOURCE_STAMP = ".bench-source"
# What the Dockerfile copies to build the wheel from.
SOURCE_FILES = ("pyproject.toml", "README.md")
SOURCE_DIRS = ("src",)
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


class VenvError(RuntimeError):
    """The production venv could not be built or the source not installed."""


@dataclass(frozen=True)
class ProdVenv:
    path: Path
    built_seconds: float  # 0 when reused
    installed_seconds: float  # 0 when the installed source was current

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def torghut(self) -> Path:
        return self.path / "bin" / "torghut"


def _name(requirement: str) -> str:
    """PEP 503's normalized project name of a requirement line."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    return re.sub(r"[-_.]+", "-", match.group(0)).lower() if match else ""


def _pip(python: Path | str, args: list[str], log: Path) -> None:
    with log.open("a", encoding="utf-8") as out:
        done = subprocess.run(
            [str(python), "-m", "pip", "--disable-pip-version-check", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        raise VenvError(f"pip {' '.join(args[:2])} failed:\n" + "\n".join(tail))


def shown(path: Path) -> str:
    """The path relative to the checkout when it lies inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def clean_env() -> dict[str, str]:
    """The environment without what would put the development venv or the checkout's src on
    the path of the production interpreter."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONUSERBASE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _stamp() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{digest} {sys.version.split()[0]} {getattr(sys, '_base_executable', '')}\n"


def _source_files() -> Iterator[Path]:
    for name in SOURCE_FILES:
        yield ROOT / name
    for top in SOURCE_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            parts = path.relative_to(ROOT).parts
            skipped = any(p == "__pycache__" or p.endswith(".egg-info") for p in parts)
            if path.is_file() and not skipped and path.suffix != ".pyc":
                yield path


def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in _source_files():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest() + "\n"


def _build(log: Path) -> None:
    shutil.rmtree(VENV, ignore_errors=True)
    # venv takes the base interpreter even when this one runs inside the development venv.
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, env=clean_env())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies: list[str] = project["project"]["dependencies"]
    backend: list[str] = project["build-system"]["requires"]
    pinned = {_name(d) for d in [*dependencies, *backend]}
    # The development venv's versions for everything pyproject does not pin itself (a stale
    # development venv must not override a pin that changed).
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=False,
    )
    constraints = [
        line
        for line in frozen.stdout.splitlines()
        if "==" in line and not line.startswith(("-", "#")) and _name(line) not in pinned
    ]
    (VENV / "constraints.txt").write_text("\n".join(constraints) + "\n", encoding="utf-8")
    (VENV / "requirements.txt").write_text(
        "\n".join([*dependencies, *backend]) + "\n", encoding="utf-8"
    )
    _pip(
        VENV / "bin" / "python",
        ["install", "-c", str(VENV / "constraints.txt"), "-r", str(VENV / "requirements.txt")],
        log,
    )


def _install_source(log: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-prod-src-") as tmp:
        copy = Path(tmp) / "torghut"
        copy.mkdir()
        for name in SOURCE_FILES:
            shutil.copy2(ROOT / name, copy / name)
        for top in SOURCE_DIRS:
            shutil.copytree(ROOT / top, copy / top, ignore=SKIPPED)
        _pip(
            VENV / "bin" / "python",
            [
                "install",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--force-reinstall",
                str(copy),
            ],
            log,
        )


def _timed(step: Callable[[Path], None], log: Path) -> float:
    """Run one step of the venv's making; its seconds. A failure is a VenvError."""
    started = time.monotonic()
    try:
        step(log)
    except (OSError, subprocess.SubprocessError) as exc:
        raise VenvError(str(exc)) from exc
    return time.monotonic() - started


def ensure(say: bool = True) -> ProdVenv:
    """The production venv with the checkout's current source installed; built or refreshed
    as needed. Raises VenvError when it cannot be."""
    LOCK.touch()
    with LOCK.open("r") as lock:
        # Another bench run in this checkout may be building it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        log = Path(tempfile.mkstemp(prefix="bench-prod-venv-", suffix=".log")[1])
        try:
            built = installed = 0.0
            stamp = VENV / STAMP
            current = stamp.read_text(encoding="utf-8") if stamp.is_file() else ""
            if current != _stamp() or not (VENV / "bin" / "python").is_file():
                if say:
                    print(
                        f"bench: building the production venv {shown(VENV)} "
                        "(runtime dependencies only; once, about a minute)...",
                        file=sys.stderr,
                        flush=True,
                    )
                built = _timed(_build, log)
                (VENV / SOURCE_STAMP).unlink(missing_ok=True)
                stamp.write_text(_stamp(), encoding="utf-8")
            source_stamp = VENV / SOURCE_STAMP
            digest = _source_digest()
            if not source_stamp.is_file() or source_stamp.read_text(encoding="utf-8") != digest:
                installed = _timed(_install_source, log)
                source_stamp.write_text(digest, encoding="utf-8")
            return ProdVenv(VENV, built, installed)
        finally:
            log.unlink(missing_ok=True)
