"""New virtual environments, made as a user makes them: what a test runs there
sees only what the README's (or Binder's) install put there. Only pip's
download cache is shared with this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: What must not leak from the test process into a new environment.
_NOT_INHERITED = ("PYTHON", "PIP_", "VIRTUAL_ENV", "JUPYTER", "CONDA")


class Venv:
    """A new venv under ``root`` with its own scratch HOME."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / "venv"
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log = root / "build.log"
        subprocess.run([sys.executable, "-m", "venv", str(self.path)], check=True, timeout=120)
        env = {key: value for key, value in os.environ.items() if not key.startswith(_NOT_INHERITED)}
        env.update(
            PATH=f"{self.bin}{os.pathsep}{env['PATH']}",
            HOME=str(self.home),
            VIRTUAL_ENV=str(self.path),
            PYTHONNOUSERSITE="1",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        )
        cache = subprocess.run(
            [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True
        ).stdout.strip()
        if cache and os.path.isdir(cache):
            env["PIP_CACHE_DIR"] = cache
        self.env = env

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def run(self, *step: str, cwd: Path | None = None, timeout: float = 900) -> None:
        """Run one install step in the venv; a failure shows the end of the build log."""
        with open(self.log, "ab") as out:
            done = subprocess.run(
                list(step),
                env=self.env,
                cwd=str(cwd or self.home),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        assert done.returncode == 0, f"{' '.join(step)} failed:\n{self.log.read_text(errors='replace')[-4000:]}"
