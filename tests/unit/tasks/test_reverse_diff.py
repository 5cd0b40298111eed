"""reverse_diff: the fix from a bug-introducing diff, checked against real `git apply` (no Docker)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from envfarm.tasks.diff import DiffError, reverse_diff

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

MODIFIED = """\
diff --git a/pkg/mod.py b/pkg/mod.py
index 1111111..2222222 100644
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,5 +1,5 @@ def f(x):
 def f(x):
-    if x > 1:
-        return x + 1
+    if x >= 1:
+        return x - 1
     return x
 # end
"""
REVERSED = """\
diff --git b/pkg/mod.py a/pkg/mod.py
index 2222222..1111111 100644
--- b/pkg/mod.py
+++ a/pkg/mod.py
@@ -1,5 +1,5 @@ def f(x):
 def f(x):
-    if x >= 1:
-        return x - 1
+    if x > 1:
+        return x + 1
     return x
 # end
"""


def _git(repo: Path, *args: str, stdin: str | None = None) -> str:
    res = subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, text=True)
    assert res.returncode == 0, f"git {' '.join(args)}: {res.stderr}"
    return res.stdout


def _tree(repo: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file outside .git: its bytes and whether it is executable."""
    return {str(p.relative_to(repo)): (p.read_bytes(), bool(p.stat().st_mode & 0o100))
            for p in sorted(repo.rglob("*")) if p.is_file() and ".git" not in p.relative_to(repo).parts}


@pytest.fixture
def repo_and_diff(tmp_path: Path) -> tuple[Path, str]:
    """A repository at a clean commit and the staged diff of a bug touching every kind of change:
    a modification, a new file, a deleted file, a rename with edits, a mode change, and files
    that lose or gain their final newline."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "mod.py").write_text("def f(x):\n    if x > 1:\n        return x + 1\n    return x\n# end\n")
    (repo / "pkg" / "gone.py").write_text("A = 1\nB = 2\n")
    (repo / "pkg" / "old name.py").write_text("".join(f"line {n}\n" for n in range(20)))
    (repo / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (repo / "tail.txt").write_text("first\nlast\n")
    (repo / "nonl.txt").write_text("one\ntwo")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "clean")

    (repo / "pkg" / "mod.py").write_text("def f(x):\n    if x >= 1:\n        return x - 1\n    return x\n# end\n")
    (repo / "pkg" / "gone.py").unlink()
    (repo / "pkg" / "new.py").write_text("NEW = True\nno_newline = 1")
    (repo / "pkg" / "old name.py").rename(repo / "pkg" / "new name.py")
    (repo / "pkg" / "new name.py").write_text("".join(f"line {n}\n" for n in range(19)) + "line 19 changed\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "tail.txt").write_text("first\nlast")
    (repo / "nonl.txt").write_text("one\ntwo\nthree\n")
    _git(repo, "add", "-A")
    diff = _git(repo, "diff", "--cached", "-M")
    _git(repo, "reset", "-q", "--hard")
    return repo, diff


def test_reverse_of_a_modification_swaps_sides_and_lines():
    assert reverse_diff(MODIFIED) == REVERSED
    assert reverse_diff(REVERSED) == MODIFIED


def test_the_fixture_diff_has_every_kind_of_change(repo_and_diff):
    _, diff = repo_and_diff
    for marker in ("new file mode", "deleted file mode", "rename from pkg/old name.py", "old mode 100644",
                   "\\ No newline at end of file"):
        assert marker in diff


def test_reversing_twice_gives_the_original(repo_and_diff):
    _, diff = repo_and_diff
    assert reverse_diff(diff) != diff
    assert reverse_diff(reverse_diff(diff)) == diff


def _files(diff: str) -> list[str]:
    return sorted("diff --git " + part for part in diff.split("diff --git ")[1:])


def test_reverse_is_what_git_diff_R_writes(repo_and_diff):
    """File by file, byte for byte (git orders the files of a reversed rename by their new names)."""
    repo, diff = repo_and_diff
    _git(repo, "apply", "--index", "-", stdin=diff)
    expected = _git(repo, "diff", "--cached", "-M", "-R")
    assert _files(reverse_diff(diff)) == _files(expected)


def test_applying_the_diff_then_its_reverse_restores_the_tree(repo_and_diff):
    repo, diff = repo_and_diff
    clean = _tree(repo)
    _git(repo, "apply", "-", stdin=diff)
    buggy = _tree(repo)
    assert buggy != clean and "pkg/new.py" in buggy and "pkg/gone.py" not in buggy
    assert buggy["run.sh"][1] and buggy["tail.txt"][0] == b"first\nlast"
    _git(repo, "apply", "-", stdin=reverse_diff(diff))
    assert _tree(repo) == clean
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_binary_content_is_refused_with_the_reason(tmp_path):
    binary = ("diff --git a/logo.png b/logo.png\nindex 1111111..2222222 100644\n"
              "GIT binary patch\nliteral 4\nLcmZ?wbhEHbj\n\n")
    with pytest.raises(DiffError, match="binary"):
        reverse_diff(binary)
    with pytest.raises(DiffError, match="binary"):
        reverse_diff("diff --git a/a.bin b/a.bin\nindex 1..2 100644\nBinary files a/a.bin and b/a.bin differ\n")


def test_copies_and_corrupt_hunks_are_refused():
    copy = "diff --git a/a.py b/b.py\nsimilarity index 100%\ncopy from a.py\ncopy to b.py\n"
    with pytest.raises(DiffError, match="copy"):
        reverse_diff(copy)
    with pytest.raises(DiffError, match="cut short"):
        reverse_diff(MODIFIED.replace("     return x\n # end\n", ""))


def test_text_outside_files_and_quoted_names_are_kept():
    diff = ('From: someone\nSubject: bug\n\ndiff --git "a/sp ace\\303\\251.py" "b/sp ace\\303\\251.py"\n'
            'index 1111111..2222222 100644\n--- "a/sp ace\\303\\251.py"\n+++ "b/sp ace\\303\\251.py"\n'
            "@@ -1 +1 @@\n-x = 1\n+x = 2\n")
    rev = reverse_diff(diff)
    assert rev.startswith('From: someone\nSubject: bug\n\ndiff --git "b/sp ace\\303\\251.py" "a/sp ace\\303\\251.py"\n')
    assert "-x = 2\n+x = 1\n" in rev
    assert reverse_diff(rev) == diff
