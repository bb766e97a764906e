"""docs/rules.md: every built-in rule has a section, and its module cites it."""

import importlib
import re
from pathlib import Path

from ngf.host.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = set(re.findall(r'<a id="([\w-]+)"></a>', (ROOT / "docs" / "rules.md").read_text()))


def test_every_built_in_rule_has_a_section_that_its_module_cites():
    registry = load_registry(blocked=["signsym"])
    for name, entry in registry.rules.items():
        assert name in ANCHORS, f"docs/rules.md has no section for {name}"
        doc = importlib.import_module(entry.factory.__module__).__doc__ or ""
        assert f"docs/rules.md#{name}" in doc, f"{entry.factory.__module__} does not cite docs/rules.md#{name}"


def test_every_cited_anchor_exists():
    cited = set()
    for path in (ROOT / "src").rglob("*.py"):
        cited |= set(re.findall(r"docs/rules\.md#([\w-]+)", path.read_text()))
    assert cited and cited <= ANCHORS, cited - ANCHORS
