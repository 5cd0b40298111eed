"""The diff parser: names read as git apply reads them, hunks by their counts (no Docker)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from envfarm.policy.scripted import FALLBACK_MARK, ScriptedPolicy
from envfarm.tasks.diff import files_in_diff, parse_diff, patch_paths, unquote_c_style
from envfarm.tasks.loading import BUILTIN_DIR, load_jsonl
from envfarm.tasks.patch_guard import inspect_patch

EDIT = """\
diff --git a/pkg/mod.py b/pkg/mod.py
index 1111111..2222222 100644
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,4 +1,4 @@
 def f(x):
-    return x + 1
+    return x - 1

 # end
"""
NEW = """\
diff --git a/docs/new.txt b/docs/new.txt
new file mode 100755
index 0000000..3333333
--- /dev/null
+++ b/docs/new.txt
@@ -0,0 +1,2 @@
+one
+two
\\ No newline at end of file
"""
DELETED = """\
diff --git a/old.py b/old.py
deleted file mode 100644
index 4444444..0000000
--- a/old.py
+++ /dev/null
@@ -1 +0,0 @@
-gone
"""
RENAME = """\
diff --git a/src/a.py b/src/b c.py
similarity index 90%
rename from src/a.py
rename to src/b c.py
index 5555555..6666666 100644
--- a/src/a.py
+++ b/src/b c.py\t
@@ -1 +1 @@
-x = 1
+x = 2
"""
MODE_ONLY = """\
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
"""
QUOTED = """\
diff --git "a/dir/x y\\303\\251.py" "b/dir/x y\\303\\251.py"
index 7777777..8888888 100644
--- "a/dir/x y\\303\\251.py"
+++ "b/dir/x y\\303\\251.py"
@@ -1 +1 @@
-a = 1
+a = 2
"""


def test_a_modification_with_its_hunk():
    [f] = parse_diff(EDIT)
    assert (f.old_path, f.new_path, f.path) == ("pkg/mod.py", "pkg/mod.py", "pkg/mod.py")
    assert f.git and not (f.new_file or f.deleted or f.renamed or f.binary or f.mode_changed)
    [h] = f.hunks
    assert (h.old_start, h.old_count, h.new_start, h.new_count) == (1, 4, 1, 4)
    # the empty line inside the hunk is an empty context line, as git apply reads it
    assert h.old_text == "def f(x):\n    return x + 1\n\n# end\n"
    assert h.new_text == "def f(x):\n    return x - 1\n\n# end\n"


def test_new_and_deleted_files():
    new, deleted = parse_diff(NEW + DELETED)
    assert (new.old_path, new.new_path, new.new_file, new.new_mode) == (None, "docs/new.txt", True, "100755")
    assert new.hunks[0].new_text == "one\ntwo" and not new.hunks[0].new_eof_newline
    assert (deleted.old_path, deleted.new_path, deleted.deleted, deleted.path) == ("old.py", None, True, "old.py")
    assert files_in_diff(NEW + DELETED) == ["docs/new.txt", "old.py"]


def test_renames_name_both_sides():
    [f] = parse_diff(RENAME)
    assert f.renamed and (f.old_path, f.new_path) == ("src/a.py", "src/b c.py")
    assert patch_paths(RENAME) == ["src/a.py", "src/b c.py", "src/b"]  # "src/b": GNU patch's reading
    assert files_in_diff(RENAME) == ["src/b c.py"]
    assert f.hunks[0].new_lines == ["x = 2"]


def test_mode_only_change():
    [f] = parse_diff(MODE_ONLY)
    assert (f.old_path, f.new_path, f.old_mode, f.new_mode) == ("run.sh", "run.sh", "100644", "100755")
    assert f.mode_changed and not f.hunks and not f.symlink


def test_quoted_paths_are_unquoted_as_utf8():
    [f] = parse_diff(QUOTED)
    assert f.path == "dir/x yé.py" and patch_paths(QUOTED) == ["dir/x yé.py"]
    assert unquote_c_style('"a\\tb\\"c\\\\d\\n"') == ('a\tb"c\\d\n', 14)
    assert unquote_c_style('"unterminated') is None and unquote_c_style("plain") is None


def test_unquoted_names_with_spaces_come_from_the_header():
    patch = "diff --git a/x y.py b/x y.py\nnew file mode 100644\n--- /dev/null\n+++ b/x y.py\n@@ -0,0 +1 @@\n+x\n"
    [f] = parse_diff(patch)
    assert f.new_path == "x y.py"
    # GNU patch (grading's fallback) reads only the first word: the guard sees that name too
    assert patch_paths(patch) == ["x y.py", "x"]


def test_header_whitespace_is_read_as_git_apply_reads_it():
    trailing = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py  \n@@ -1 +1 @@\n-a\n+b\n"
    [f] = parse_diff(trailing)
    assert (f.old_path, f.new_path) == ("x.py", "x.py  ")  # git apply writes "x.py  "
    tab = "diff --git a/x.py b/x.py\n--- a/x.py\t\n+++ b/x.py\t\n@@ -1 +1 @@\n-a\n+b\n"
    assert parse_diff(tab)[0].paths == ["x.py"]
    stamped = ("--- a/x.py\t2024-01-01 10:00:00.000000000 +0000\n"
               "+++ b/x.py  2024-01-01 10:00:01.000000000 +0000\n@@ -1 +1 @@\n-a\n+b\n")
    [f] = parse_diff(stamped)
    assert not f.git and f.paths == ["x.py"]
    dev_null = "diff --git a/x.py b/x.py\ndeleted file mode 100644\n--- a/x.py\n+++ /dev/null  \n@@ -1 +0,0 @@\n-a\n"
    assert parse_diff(dev_null)[0].new_path is None


def test_gnu_patch_reading_of_a_name_is_kept():
    patch = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/conftest.py junk\n@@ -1 +1 @@\n-a\n+b\n"
    assert "conftest.py" in patch_paths(patch)
    assert inspect_patch(patch, ["tests"]).reverted == ["conftest.py"]


def test_a_header_line_between_hunks_is_seen():
    """git apply refuses the second hunk ("fragment without header"); GNU patch, grading's
    fallback, writes it to conftest.py: the guard must name that file."""
    patch = ("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
             "note\n+++ b/conftest.py\nmore text\n@@ -0,0 +1 @@\n+evil\n")
    assert patch_paths(patch) == ["x.py", "conftest.py"]
    assert inspect_patch(patch, ["tests"]).reverted == ["conftest.py"]


def test_lines_inside_a_hunk_are_never_headers():
    patch = ("diff --git a/x.sql b/x.sql\n--- a/x.sql\n+++ b/x.sql\n@@ -1,3 +1,2 @@\n a\n"
             "--- a/conftest.py\n b\n")
    [f] = parse_diff(patch)
    assert f.hunks[0].old_lines == ["a", "-- a/conftest.py", "b"]
    assert patch_paths(patch) == ["x.sql"]


def test_a_corrupt_hunk_ends_where_a_header_starts():
    patch = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,5 +1,5 @@\n-a\n+b\n" + NEW
    assert [f.path for f in parse_diff(patch)] == ["x.py", "docs/new.txt"]
    # a hunk cut short is no hunk to any tool: header-like lines in it are still seen
    short = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,9 +1,9 @@\n-a\n+++ b/conftest.py\n"
    assert "conftest.py" in patch_paths(short)


def test_text_around_the_patch_and_reversed_prefixes():
    mail = "Subject: fix\n\nSome words.\n---\n" + EDIT.replace("a/", "q/").replace("b/", "a/") + "-- \nsig\n"
    [f] = parse_diff(mail)
    assert f.path == "pkg/mod.py" and len(f.hunks) == 1


def test_symlinks_and_binary_files():
    link = "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc/passwd\n"
    binary = "diff --git a/img.png b/img.png\nindex 1..2 100644\nBinary files a/img.png and b/img.png differ\n"
    lf, bf = parse_diff(link + binary)
    assert lf.symlink and inspect_patch(link, []).symlinks
    assert bf.binary and bf.path == "img.png"


@pytest.mark.parametrize("path", ["../x y.py", "/etc/passwd", ".git/config"])
def test_quoted_paths_outside_the_repository_are_seen(path):
    quoted = path.replace(" ", "\\040")
    patch = f'diff --git "a/{quoted}" "b/{quoted}"\nnew file mode 100644\n--- /dev/null\n+++ "b/{quoted}"\n' \
            "@@ -0,0 +1 @@\n+x\n"
    assert path in inspect_patch(patch, []).outside_repo


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("patch", [EDIT, NEW, DELETED, RENAME, MODE_ONLY, QUOTED,
                                   "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py  \n@@ -1 +1 @@\n-a\n+b\n",
                                   "--- a/y.py\n+++ b/x.py  \n@@ -1 +1 @@\n-a\n+b\n"])
def test_names_agree_with_git_apply(patch, tmp_path):
    (tmp_path / "p.diff").write_text(patch)
    out = subprocess.run(["git", "apply", "--numstat", "-z", "p.diff"], cwd=tmp_path, capture_output=True,
                         check=True).stdout.decode()
    # -z: "added\tdeleted\tpath\0", or for a rename "added\tdeleted\t\0old\0new\0"
    fields = out.split("\0")
    head = fields[0].split("\t")[2]
    git_paths = [head] if head else fields[1:3]
    assert [p for f in parse_diff(patch) for p in ([f.path] if head else f.paths)] == git_paths


def test_scripted_policy_edits_quoted_paths_and_applies_what_the_editor_cannot(fixture_row_task):
    plan = ScriptedPolicy(run_tests=False).plan(fixture_row_task(QUOTED))
    edits = [c for turn in plan for c in turn if c["name"] == "str_replace_editor" and c["arguments"]["command"]
             == "str_replace"]
    assert [c["arguments"]["path"] for c in edits] == ["dir/x yé.py"]
    pure_rename = "diff --git a/x.py b/y.py\nsimilarity index 100%\nrename from x.py\nrename to y.py\n"
    for patch in (MODE_ONLY, pure_rename):  # nothing the editor could do: the whole patch is applied
        plan = ScriptedPolicy(run_tests=False).plan(fixture_row_task(patch))
        assert any(FALLBACK_MARK in c["arguments"].get("command", "") for turn in plan for c in turn)


def test_every_shipped_patch_parses():
    tasks = [t for f in sorted(BUILTIN_DIR.glob("*.jsonl")) for t in load_jsonl(f)]
    assert tasks
    for task in tasks:
        for patch in (task.patch, task.bug_patch):
            files = parse_diff(patch)
            assert files and all(f.hunks and f.old_path == f.new_path for f in files), task.instance_id
            assert all(h.old_lines != h.new_lines for f in files for h in f.hunks), task.instance_id


@pytest.fixture
def fixture_row_task():
    from envfarm.tasks.schema import Task

    def make(patch: str) -> Task:
        return Task(instance_id="t", repo="r", base_commit="0123456789", problem_statement="p", patch=patch,
                    FAIL_TO_PASS=["tests/test_x.py::test"], image="img:1", eval_script="#!/bin/bash\n")
    return make
