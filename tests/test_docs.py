"""The project stands on its own: code and docs cite the repository's own files, and those files exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
# Written with character classes so that this file, which names them, does not itself cite them.
OUTSIDE = re.compile(r"design[.]md|research/methods[.]md|ecosystem[.]md|[.][.]/shared|shared/(?:research)")
DOC_REFERENCE = re.compile(r"(?<![\w/.-])docs/[\w./-]+?\.md(?![\w])")  # not a path inside another repository


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.yaml", "*.toml", "Makefile"], cwd=REPOSITORY,
                           capture_output=True, text=True, check=True).stdout.split()
    return [REPOSITORY / name for name in names if (REPOSITORY / name).is_file()]


def test_nothing_cites_material_outside_the_repository():
    found = [f"{path.relative_to(REPOSITORY)}:{number}: {line.strip()}"
             for path in tracked_text_files()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE.search(line)]
    assert found == []


def test_every_cited_doc_exists():
    cited = {match for path in tracked_text_files() for match in DOC_REFERENCE.findall(path.read_text(encoding="utf-8"))}
    assert cited, "the code cites its docs"
    assert sorted(name for name in cited if not (REPOSITORY / name).is_file()) == []
