"""The distribution: the wheel holds the library alone, with its licence, and passes twine check.

Builds the sdist and the wheel from a copy of the tracked sources (``git ls-files``), exactly as
``python -m build`` does for a user, without network access (``--no-isolation``: setuptools and
wheel come from this venv).
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import token_middleware

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir",
                    str(out), str(src)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_twine_check_passes(dist: dict[str, Path]) -> None:
    result = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]),
                             str(dist["sdist"])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_wheel_holds_the_library_alone(dist: dict[str, Path]) -> None:
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"token_middleware"}
    assert "token_middleware/py.typed" in names
    assert "token_middleware/core/validator.py" in names
    assert not [n for n in names if "demo" in n.split("/")[-1] or n.startswith(("deploy/", "tests/"))]


def test_wheel_and_sdist_carry_the_licence(dist: dict[str, Path]) -> None:
    wheel = zipfile.ZipFile(dist["wheel"])
    licences = [n for n in wheel.namelist() if n.endswith("/LICENSE") and ".dist-info/" in n]
    assert licences and "MIT License" in wheel.read(licences[0]).decode()
    with tarfile.open(dist["sdist"]) as sdist:
        assert any(m.name.endswith("/LICENSE") and m.name.count("/") == 1 for m in sdist.getmembers())


def test_the_version_is_written_once(dist: dict[str, Path]) -> None:
    assert dist["wheel"].name.startswith(f"token_middleware-{token_middleware.__version__}-")
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: token_middleware.__version__"
    hits = [p for p in ROOT.joinpath("token_middleware").rglob("*.py")
            if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert hits == [ROOT / "token_middleware" / "__init__.py"]


def test_wheel_metadata_names_extras_that_install_what_the_demo_needs(dist: dict[str, Path]) -> None:
    wheel = zipfile.ZipFile(dist["wheel"])
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    text = wheel.read(meta).decode()
    assert "License-File: LICENSE" in text
    demo = [line for line in text.splitlines() if line.startswith("Requires-Dist:") and 'extra == "demo"' in line]
    # the gevent_pywsgi worker imports packaging, which gunicorn pulls in only with its gevent extra
    assert any(line.startswith("Requires-Dist: gunicorn[gevent]") for line in demo), demo
    assert any(line.startswith("Requires-Dist: packaging") for line in demo), demo
