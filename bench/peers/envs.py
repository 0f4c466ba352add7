"""The peers' virtual environments and the redis-server binary: found or made, or a clear error.

Each venv lives under `.venv-peers/` (gitignored) and is made once from a pinned requirements
file beside this module; a stamp holding the file's hash makes a changed pin reinstall it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, log

HERE = Path(__file__).resolve().parent
CACHE = ROOT / ".venv-peers"
INSTALL_TIMEOUT = 600  # seconds for one pip install


class SetupError(Exception):
    """Something the benchmark needs is missing and cannot be made; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Venv:
    """A pinned environment: its folder under .venv-peers/ and its requirements file."""

    name: str
    requirements: Path

    @property
    def folder(self) -> Path:
        return CACHE / self.name

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"


RQ_CELERY = Venv("rq-celery", HERE / "requirements-rq-celery.txt")
ARQ = Venv("arq", HERE / "requirements-arq.txt")
UVLOOP = Venv("uvloop", HERE / "requirements-uvloop.txt")  # a --target folder, not a venv


def _stamp(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def _pip(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"installing {what} took over {INSTALL_TIMEOUT} s; gave up") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise SetupError(f"could not install {what} (is PyPI reachable?):\n{tail}")


def ensure_venv(venv: Venv) -> Path:
    """The venv's python, after creating the venv and installing its pins if needed."""
    stamp = venv.folder / ".installed"
    wanted = _stamp(venv.requirements)
    if stamp.exists() and stamp.read_text() == wanted and venv.python.exists():
        return venv.python
    log(f"peers: installing {venv.requirements.name} into {venv.folder.relative_to(ROOT)}")
    shutil.rmtree(venv.folder, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv.folder)], check=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as exc:
        raise SetupError(f"could not create the venv {venv.folder}: {exc}") from exc
    _pip(
        [str(venv.python), "-m", "pip", "install", "--quiet", "-r", str(venv.requirements)],
        venv.requirements.name,
    )
    stamp.write_text(wanted)
    return venv.python


def ensure_uvloop() -> Path:
    """A folder holding uvloop alone, to put on the PYTHONPATH of the one server under uvloop."""
    stamp = UVLOOP.folder / ".installed"
    wanted = _stamp(UVLOOP.requirements)
    if stamp.exists() and stamp.read_text() == wanted:
        return UVLOOP.folder
    log(f"peers: installing uvloop into {UVLOOP.folder.relative_to(ROOT)}")
    shutil.rmtree(UVLOOP.folder, ignore_errors=True)
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(UVLOOP.folder)]
    _pip([*argv, "-r", str(UVLOOP.requirements)], UVLOOP.requirements.name)
    stamp.write_text(wanted)
    return UVLOOP.folder


def redis_server() -> str:
    """The path of `redis-server`, or a SetupError that says how to install it."""
    path = shutil.which("redis-server")
    if path is None:
        raise SetupError(
            "redis-server is not installed, and RQ, arq and Celery need it. Install it from "
            "your OS's packages: `sudo apt-get install -y redis-server` (Debian, Ubuntu) or "
            "`brew install redis` (macOS); `make bench-peers` tries apt-get itself when root."
        )
    return path


def versions(python: Path, packages: list[str]) -> str:
    """`name version` for each package as the given venv sees it (for the report)."""
    if not python.exists():
        return ""
    code = (
        "import importlib.metadata as m, sys\n"
        "print(', '.join(f'{p} {m.version(p)}' for p in sys.argv[1:]))"
    )
    done = subprocess.run(
        [str(python), "-c", code, *packages], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or f"({' '.join(packages)}: version unknown)"
