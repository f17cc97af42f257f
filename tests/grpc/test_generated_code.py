"""The committed gRPC code is exactly what scripts/gen-proto produces from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "gen-proto"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated, "gen-proto produced nothing"
    for rel in generated:
        committed = REPO / "src" / rel
        assert committed.exists(), f"{rel} is generated but not committed: run scripts/gen-proto"
        assert committed.read_bytes() == (tmp_path / rel).read_bytes(), (
            f"src/{rel} is stale: run scripts/gen-proto and commit the result"
        )
