"""The tree shows the product: what is deployed, what is excluded from the deploy, what is where.

- Every tracked path is either part of the deployed app (DEPLOYED) or left out by .funcignore,
  read the way Core Tools reads it (`func azure functionapp publish`) and the way azd reads it
  (`azd deploy` of azure.yaml's `project: .`: gitignore rules), and .funcignore names nothing
  that does not exist.
- The product never imports the local tools (tools/*: the stand-ins, the CLI, the stack runner)
  nor the tests.
- The README's code map names exactly the top-level folders, and the packages of tools/.
- Each tools/ package is a root for ruff and mypy, and its tests are collected and relaxed alike.
"""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from pathlib import Path

from loopserver.testing import missing_service

ROOT = Path(__file__).resolve().parents[1]

# What `func azure functionapp publish` must upload: the app and nothing else.
PRODUCT_PACKAGES = ("activities", "http_api", "orchestrators", "rules", "storage")
PRODUCT_MODULES = ("function_app.py", "wiring.py", "telemetry.py")
DEPLOYED = {*PRODUCT_PACKAGES, *PRODUCT_MODULES, "host.json", "requirements.txt"}

# Untracked things a working copy has that must never be uploaded either.
LOCAL_ONLY = (
    ".venv/bin/python",
    "node_modules/.bin/azurite-blob",
    ".state/devhost/store.sqlite",
    ".state-2/devhost/store.sqlite",  # a second stack's (make run STATE=.state-2)
    ".local/demo-image.png",
    ".mypy_cache/3.11/rules/request.data.json",
    ".ruff_cache/CACHEDIR.TAG",
    ".pytest_cache/README.md",
    ".hypothesis/examples/x",
    "local.settings.json",
    "rules/__pycache__/request.cpython-311.pyc",
    ".azure/dev/.env",  # azd's environment: a deployment's values
    ".azure/config.json",
)


def tracked_paths() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        missing_service("git and a git checkout of the repository", f"git ls-files: {error}")
        return []
    return [path for path in out.split("\0") if path]


def funcignore_patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern_regex(pattern: str) -> str:
    """One .funcignore line as Core Tools' GitIgnoreParser (a port of codemix/gitignore-parser)
    turns it into a regular expression: anchored at the start of the path, `*` within one
    folder, `**` across folders."""
    escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(0), pattern.lstrip("/"))
    return escaped.replace("**", "(.+)").replace("*", "([^\\/]+)")


def denies(patterns: list[str], path: str) -> bool:
    """Whether Core Tools leaves ``path`` (relative, with /) out of the deploy package."""
    assert not any(p.startswith("!") for p in patterns), "negations: extend this reader first"
    positive = re.compile("^((" + ")|(".join(_pattern_regex(p) for p in patterns) + "))\\b")
    return positive.match(path) is not None


def test_the_reader_reads_funcignore_as_core_tools_does():
    assert denies(["tests"], "tests/app/test_http_api_rules.py")
    assert denies([".git*"], ".gitignore")
    assert denies(["**/__pycache__"], "rules/__pycache__/request.cpython-311.pyc")
    assert not denies(["tests"], "rules/tests.py")
    assert not denies(["tools"], "toolshed/x.py")
    assert not denies(["*.md"], "docs/settings.md")


def test_every_tracked_path_is_deployed_or_left_out_and_nothing_else():
    patterns = funcignore_patterns()
    paths = tracked_paths()
    assert {path.split("/")[0] for path in paths} >= DEPLOYED, "a deployed entry is missing"
    uploaded_by_mistake = [
        p for p in paths if p.split("/")[0] not in DEPLOYED and not denies(patterns, p)
    ]
    assert uploaded_by_mistake == [], (
        "these would be deployed: add them to .funcignore, or to DEPLOYED if the app needs them"
    )
    left_out_by_mistake = [p for p in paths if p.split("/")[0] in DEPLOYED and denies(patterns, p)]
    assert left_out_by_mistake == []
    assert [p for p in LOCAL_ONLY if not denies(patterns, p)] == []


def azd_denies(patterns: list[str], path: str) -> bool:
    """Whether azd leaves ``path`` out of the package: .funcignore read with gitignore rules
    (learn.microsoft.com/azure/developer/azure-developer-cli/service-packaging-ignore-files)."""
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(patterns).match_file(path)


def test_azd_deploys_exactly_what_core_tools_deploys():
    patterns = funcignore_patterns()
    paths = tracked_paths() + list(LOCAL_ONLY)
    differ = [p for p in paths if azd_denies(patterns, p) != denies(patterns, p)]
    assert differ == [], "Core Tools and azd read .funcignore differently for these"
    assert azd_denies(patterns, "infra/main.bicep")
    assert azd_denies(patterns, "azure.yaml")
    assert not azd_denies(patterns, "telemetry.py")


def test_funcignore_names_nothing_stale():
    paths = tracked_paths() + list(LOCAL_ONLY)
    stale = [p for p in funcignore_patterns() if not any(denies([p], path) for path in paths)]
    assert stale == [], "these .funcignore entries match nothing in the repository"


def tool_packages() -> set[str]:
    """Every importable package under tools/ (the tools and their test packages)."""
    return {init.parent.name for init in ROOT.glob("tools/*/*/__init__.py")}


def product_files() -> list[Path]:
    files = [ROOT / name for name in PRODUCT_MODULES]
    for package in PRODUCT_PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_product_never_imports_the_tools_or_the_tests():
    forbidden = tool_packages() | {"tests"}
    assert {"simulator", "devhost", "loopserver", "localrun", "clients"} <= forbidden
    found = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & forbidden)
        for path in product_files()
    }
    assert len(found) > len(PRODUCT_MODULES)
    assert {path: names for path, names in found.items() if names} == {}


def code_map() -> list[str]:
    """The paths the README's "Code map" section names, as `name/` at the start of a list item."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Code map\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Code map' section"
    return re.findall(r"^\s*[-*] `([^`]+)/`", match.group(1), flags=re.MULTILINE)


def test_the_readme_code_map_names_every_folder_and_only_those():
    listed = code_map()
    folders = {path.split("/")[0] for path in tracked_paths() if "/" in path}
    tools = {path.split("/")[1] for path in tracked_paths() if path.startswith("tools/")}
    assert sorted(p for p in listed if "/" not in p) == sorted(folders)
    assert sorted(p.removeprefix("tools/") for p in listed if p.startswith("tools/")) == sorted(
        tools
    )


def test_tool_packages_have_names_of_their_own():
    # Each tool's tests are the package <package>_tests, so that none is another `tests`.
    packages = tool_packages()
    assert {
        "loopserver_tests",
        "simulator_tests",
        "devhost_tests",
        "clients_tests",
        "localrun_tests",
    } <= packages
    assert packages.isdisjoint({"tests", *PRODUCT_PACKAGES})


def test_each_tool_is_a_root_for_ruff_and_mypy_and_its_tests_are_collected():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    tools = sorted(f"tools/{p.parent.name}" for p in ROOT.glob("tools/*/pyproject.toml"))
    assert sorted(config["tool"]["ruff"]["src"]) == sorted([".", *tools])
    assert sorted(config["tool"]["mypy"]["mypy_path"].split(":")) == sorted([".", *tools])
    relaxed = {
        module
        for override in config["tool"]["mypy"]["overrides"]
        if override.get("disallow_untyped_defs") is False
        for module in override["module"]
    }
    test_packages = {p for p in tool_packages() if p.endswith("_tests")}
    assert relaxed == {"tests.*"} | {f"{p}.*" for p in test_packages}
    assert config["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests", "tools/*/*_tests"]
