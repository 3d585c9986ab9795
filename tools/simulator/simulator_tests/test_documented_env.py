"""The documented environment recipes work as written: the SDK, given those variables and no
others, reaches the simulator and gets an image.

Every recipe in the README and docs/simulator.md (a code span or a command line setting
`OPENAI_*` / `AZURE_OPENAI_*` variables) is run in a fresh interpreter whose environment holds
only that recipe (and PATH): `OpenAI()` or `AzureOpenAI()` without arguments, as a user would
after `export ...`. A recipe that leaves out a variable the SDK needs (OPENAI_API_KEY,
OPENAI_API_VERSION, ...) fails here, whatever the reader's own shell happens to hold.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", ROOT / "docs" / "simulator.md"]
DOCUMENTED = "127.0.0.1:8089"
VARIABLE = re.compile(r"\b((?:AZURE_)?OPENAI_[A-Z_]+)=(\S+)")

CALL = """
import openai
client = openai.{client}(max_retries=0)
result = client.images.generate(model="gpt-image-2", prompt="a red apple", size="1024x1024",
                                quality="low")
print(len(result.data))
"""


def recipes(path: Path) -> list[dict[str, str]]:
    """Each group of SDK variables set together: one logical line of a fenced block (with its
    backslash continuations), or one inline code span."""
    text = path.read_text(encoding="utf-8")
    groups: list[str] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        groups += block.replace("\\\n", " ").splitlines()
    outside = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    groups += re.findall(r"`([^`]+)`", outside)
    found = []
    for group in groups:
        variables = dict(VARIABLE.findall(group))
        if variables:
            found.append(variables)
    return found


ALL = [(path.relative_to(ROOT).as_posix(), recipe) for path in DOCS for recipe in recipes(path)]


def test_the_docs_hold_the_recipes():
    where = [path for path, _ in ALL]
    assert where.count("README.md") >= 3  # OpenAI, Azure, Azure v1
    assert where.count("docs/simulator.md") >= 2


@pytest.mark.subprocess
@pytest.mark.parametrize(("doc", "recipe"), ALL, ids=[f"{d}:{sorted(r)}" for d, r in ALL])
def test_a_documented_recipe_alone_gets_an_image(make_sim, doc, recipe):
    sim = make_sim()
    origin = sim.url.removeprefix("http://")
    env = {name: value.replace(DOCUMENTED, origin) for name, value in recipe.items()}
    assert all(origin in v for k, v in env.items() if k.endswith(("_URL", "_ENDPOINT"))), doc
    client = "AzureOpenAI" if "AZURE_OPENAI_ENDPOINT" in env else "OpenAI"
    done = subprocess.run(
        [sys.executable, "-c", CALL.format(client=client)],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{doc} {sorted(recipe)}: {done.stderr[-800:]}"
    assert done.stdout.strip() == "1"
    assert len(sim.ledger()) == 1
