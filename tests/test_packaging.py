"""`python -m build` makes a wheel and an sdist of `kern-agents` that install into a fresh
virtualenv, where `import kern` and the `kern` command work.

Offline and about a minute: the build uses this environment's setuptools (`--no-isolation`),
and the fresh virtualenv borrows the dependencies already installed here through a `.pth`
file, so pip installs kern alone (`--no-deps`); the wheel's declared dependencies are checked
in its metadata instead. Marked `packaging`; it runs with the whole suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import kern

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(600)]


def run(*args: str | Path, cwd: Path | None = None) -> str:
    # Without PYTHONPATH: one pointing at a checkout (as when the suite runs a worktree
    # through a shared virtualenv) would shadow the installed copy this test must import.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # A copy of the tracked files: building in the checkout would leave build/ and *.egg-info.
    source = tmp_path_factory.mktemp("source")
    files = run("git", "ls-files", "-z", cwd=ROOT).split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source)
    return out


def test_the_wheel_and_sdist_carry_the_name_version_license_and_ui(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    assert wheel.name.startswith(f"kern_agents-{kern.__version__}-")
    assert sdist.name == f"kern_agents-{kern.__version__}.tar.gz"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert "Name: kern-agents" in text
    assert f"Version: {kern.__version__}" in text
    assert "License-Expression: Apache-2.0" in text
    assert "Project-URL: Documentation" in text
    assert "Provides-Extra: local" in text
    assert "Requires-Dist: typer>=0.12" in text
    assert 'Requires-Dist: llama-cpp-python>=0.3; extra == "local"' in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "kern/py.typed" in names
    assert any(n.startswith("kern/server/ui/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert f"kern_agents-{kern.__version__}/LICENSE" in members


def test_the_wheel_and_the_sdist_install_and_run(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    # The dependencies installed here, after the venv's own site-packages: a plain path in a
    # .pth file, so this environment's editable kern (itself a .pth hook) stays out of sight.
    (Path(purelib.strip()) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    # The sdist must build on its own: into a wheel, here (the venv's bundled setuptools is
    # too old for the SPDX license field), then installed like the first.
    from_sdist = tmp_path / "from-sdist"
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        from_sdist,
        sdist,
    )
    [rebuilt] = from_sdist.glob("*.whl")
    for artifact in (wheel, rebuilt):
        run(python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", artifact)
        version = run(
            python, "-c", "import kern; print(kern.__version__, kern.__file__)", cwd=tmp_path
        )
        assert version.split()[0] == kern.__version__
        assert str(venv) in version.split()[1]  # the installed copy, not this checkout
        assert "Usage: kern" in run(venv / "bin" / "kern", "--help", cwd=tmp_path)
        assert "A user's learnings" in run(
            venv / "bin" / "kern", "learnings", "list", "--help", cwd=tmp_path
        )
