"""A clone of this repository stands alone: no file points at material outside it.

The project was built from reference notes and field reports kept beside it, in a folder a
clone does not have. Their facts now live in docs/reference/; a docstring, doc or build file that
still sends the reader to that folder, or names one of its notes, sends them nowhere. This scans
every file git knows (tracked, or new and not ignored) of the kinds that carry such pointers, this
one included, and names each offending line. The examples below are assembled from pieces so that
this file passes its own scan.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".txt", ".toml", ".json", ".yaml", ".yml", ".cfg", ".ini"}
NAMES = {"Makefile"}
# Never part of the project, even when present in a working tree.
SKIPPED_DIRS = {".git", ".venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
OUTSIDE = re.compile(
    r"\.\./shared\b"  # the folder beside the clone
    r"|\bshared[/](reference|seeds)\b"
    r"|\bfact[ -]sheet"  # the old name of the reference notes
    r"|\bseeds?\s+00\d\b"  # the field reports by their old names
    r"|\b00\d_[0-9a-f]{16}\.txt\b",  # and by their file names
    re.IGNORECASE,
)


def _candidates(root: Path) -> list[Path]:
    try:
        if not (root / ".git").exists():
            raise OSError("not a git checkout")
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        paths = [root / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        # Not a git checkout (an exported tree): every file outside the skipped folders.
        paths = [
            path
            for path in root.rglob("*")
            if not SKIPPED_DIRS.intersection(path.relative_to(root).parts)
        ]
    return sorted(path for path in paths if path.is_file() and _scanned(path.relative_to(root)))


def _scanned(relative: Path) -> bool:
    if SKIPPED_DIRS.intersection(relative.parts):
        return False
    return relative.suffix in SUFFIXES or relative.name in NAMES or relative.parts[0] == ".ci"


def outside_references(root: Path) -> list[str]:
    """``path:line: text`` for every line under ``root`` that points outside the repository."""
    found = []
    for path in _candidates(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_no_file_points_outside_the_repository():
    found = outside_references(ROOT)
    assert not found, (
        "these lines point at material a clone does not have; point at docs/reference/ "
        "instead:\n" + "\n".join(found)
    )


def test_the_scan_covers_ci_and_the_makefile():
    scanned = {path.relative_to(ROOT).as_posix() for path in _candidates(ROOT)}
    assert {
        "Makefile",
        ".ci/run",
        "README.md",
        "requirements-dev.txt",
        "tests/test_self_contained.py",
    } <= scanned


FOLDER = "shared"  # pieces of the pointers, put together only at run time


@pytest.mark.parametrize(
    "line",
    [
        f"Facts: ..{'/'}{FOLDER}{'/'}reference/gpt-image-2-api.md",
        f"see {FOLDER}{'/'}reference/functions-host-http.md",
        f"the reports in {FOLDER}{'/'}seeds{'/'}004_{'83dd96187211d61b'}.txt",
        "every rule of the Fact " + "Sheet",
        "the fact-" + "sheet's price table",
        "the 60 s kill reported in Seed " + "004",
        "the retry table (000_" + "d463709c091961c2.txt)",
    ],
)
def test_the_scan_names_the_file_and_line_of_each_kind_of_pointer(tmp_path, line):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "note.md").write_text(f"# Note\n\n{line}\n", encoding="utf-8")
    (tmp_path / "Makefile").write_text("test:\n\ttrue\n", encoding="utf-8")
    assert outside_references(tmp_path) == [f"docs/note.md:3: {line}"]


def test_pointers_inside_the_repository_pass(tmp_path):
    (tmp_path / "module.py").write_text(
        '"""Facts: docs/reference/gpt-image-2-api.md; field report B; a shared session."""\n',
        encoding="utf-8",
    )
    assert outside_references(tmp_path) == []
