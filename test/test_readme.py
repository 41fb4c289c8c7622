"""README stays true: generated tables match the code, the quick start is the two commands CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_generated_tables_are_current(repo_root: Path) -> None:
    res = subprocess.run([sys.executable, "scripts/readme_tables.py", "--check"], cwd=repo_root,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_quick_start_is_two_commands_and_ci_runs_the_second(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (repo_root / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_every_topic_of_the_contract_is_documented(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    for name in ("`~/question`", "`~/answer`", "`~/answer_image`", "`/diagnostics`", "`~/ask`",
                 "`/episode`", "`/gripper/cmd_vel`"):
        assert name in readme, name
