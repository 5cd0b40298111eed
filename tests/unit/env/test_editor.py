"""The str_replace_editor on real files (a local directory): views, edits, refusals, undo."""

from __future__ import annotations

import asyncio

import pytest

from envfarm.env.editor import Editor, LocalFileIO


@pytest.fixture
def editor(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 1\n")
    return Editor(LocalFileIO(), workdir=str(tmp_path))


def run(editor, **args):
    return asyncio.run(editor.run(args))


def test_view_file_with_line_numbers_and_range(editor, tmp_path):
    out = run(editor, command="view", path="pkg/mod.py", view_range=[2, 2])
    assert "     2\t    return 1" in out and "def f" not in out
    whole = run(editor, command="view", path=str(tmp_path / "pkg/mod.py"), view_range=[5, -1])
    assert "     5\tdef g():" in whole and "     6\t    return 1" in whole


def test_view_range_outside_file_is_refused(editor):
    assert run(editor, command="view", path="pkg/mod.py", view_range=[50, 60]).startswith("Error:")
    assert run(editor, command="view", path="pkg/mod.py", view_range=[3, 1]).startswith("Error:")


def test_view_directory_lists_files(editor):
    out = run(editor, command="view", path=".")
    assert "pkg/mod.py" in out


def test_str_replace_unique_match_edits_and_shows_snippet(editor, tmp_path):
    out = run(editor, command="str_replace", path="pkg/mod.py", old_str="def g():\n    return 1",
              new_str="def g():\n    return 2")
    assert "has been edited" in out and "return 2" in out
    assert (tmp_path / "pkg/mod.py").read_text().endswith("def g():\n    return 2\n")


def test_str_replace_refuses_ambiguous_match_naming_lines(editor, tmp_path):
    before = (tmp_path / "pkg/mod.py").read_text()
    out = run(editor, command="str_replace", path="pkg/mod.py", old_str="    return 1", new_str="    return 3")
    assert out.startswith("Error:") and "2 times" in out and "[2, 6]" in out and "unique" in out
    assert (tmp_path / "pkg/mod.py").read_text() == before


def test_str_replace_refuses_missing_match_with_whitespace_hint(editor, tmp_path):
    out = run(editor, command="str_replace", path="pkg/mod.py", old_str="def g():\n  return 1", new_str="x")
    assert out.startswith("Error:") and "did not appear verbatim" in out and "line(s) [5]" in out


def test_insert_and_undo_edit(editor, tmp_path):
    path = tmp_path / "pkg/mod.py"
    original = path.read_text()
    out = run(editor, command="insert", path="pkg/mod.py", insert_line=0, new_str="import os")
    assert "has been edited" in out and path.read_text().startswith("import os\ndef f")
    assert "undone" in run(editor, command="undo_edit", path="pkg/mod.py")
    assert path.read_text() == original
    assert run(editor, command="undo_edit", path="pkg/mod.py").startswith("Error: no edit")


def test_create_new_file_then_undo_removes_it(editor, tmp_path):
    out = run(editor, command="create", path="pkg/new.py", file_text="x = 1\n")
    assert "created" in out and (tmp_path / "pkg/new.py").read_text() == "x = 1\n"
    run(editor, command="undo_edit", path="pkg/new.py")
    assert not (tmp_path / "pkg/new.py").exists()


def test_edits_keep_non_utf8_bytes(editor, tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9 = 1\nvalue = 2\n")
    run(editor, command="str_replace", path=str(path), old_str="value = 2", new_str="value = 3")
    assert path.read_bytes() == b"caf\xe9 = 1\nvalue = 3\n"


@pytest.mark.parametrize("args", [
    {"command": "explode", "path": "pkg/mod.py"},
    {"command": "view", "path": "nope.py"},
    {"command": "str_replace", "path": "pkg/mod.py"},
    {"command": "insert", "path": "pkg/mod.py", "new_str": "x"},
    {"command": "create", "path": "pkg"},
    {"command": "view"},
])
def test_bad_arguments_are_explained(editor, args):
    assert run(editor, **args).startswith("Error:")
