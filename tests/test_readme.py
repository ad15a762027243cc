"""README.md's two set-up commands are exactly what .ci/run executes."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text.split("## What the output means")[0])


def test_ci_runs_the_readme_commands():
    install, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert install in ci.splitlines()
    assert tests in ci.splitlines()
    assert "pytest" in tests
