"""The README's commands and Python examples stay exactly right."""

import re
from pathlib import Path

import pytest

from conftest import ROOT, real_data_available

README = (ROOT / "README.md").read_text()


def block_after(marker: str) -> str:
    return re.search(rf"<!-- {marker} -->\n```bash\n(.*?)\n```", README, re.S).group(1)


def test_ci_runs_the_readme_test_command():
    command = block_after("test-command")
    assert "pytest" in command and "NGF_DATA_DIR=../shared/datasets" in command
    assert "test-command" in (ROOT / ".ci" / "run").read_text()


def test_run_command_is_the_main_job():
    assert "ngf run --rule lra" in block_after("run-command")


@pytest.mark.skipif(not real_data_available(), reason="needs real MNIST")
def test_python_examples_run():
    for block in re.findall(r"```python\n(.*?)\n```", README, re.S):
        if "ngf.run(" not in block:
            continue
        code = block.replace("epochs=5", "epochs=1")
        namespace = {}
        exec(compile(code, "README.md", "exec"), namespace)
        assert 0.5 < namespace["summary"]["test_accuracy"] <= 1
