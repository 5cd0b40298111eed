"""Snippets from tests whose state lives in helper modules of the test tree, in inherited test
methods, behind moot decorators or in `with self.assertRaises`: written out as user code, or
refused where the meaning could change."""

from __future__ import annotations

import asyncio

from envfarm.suitegen.local_imports import merged_source
from envfarm.suitegen.repro import snippet

BASE = '''"""Shared set-up."""
import unittest

from mylib import Evaluator


class DRYTest(unittest.TestCase):
    def setUp(self):
        self.s = Evaluator()

    def t(self, expr, should_be):
        return self.assertEqual(self.s.eval(expr), should_be)


__all__ = ["DRYTest"]
'''

FILES = {
    "tests/base.py": BASE,
    "tests/__init__.py": "class Mixin:\n    Cache = dict\n",
    "tests/test_names.py": '''import unittest

from mylib import Evaluator, NameError_

from .base import DRYTest


class TestNames(DRYTest):
    def test_sum(self):
        self.t("1 + 1", 2)

    def test_unknown(self):
        with self.assertRaises(NameError_):
            self.s.eval("x")

    def test_unknown_cm(self):
        with self.assertRaises(NameError_) as cm:
            self.s.eval("x")
''',
    "tests/test_mixin.py": "import unittest\n\nfrom . import Mixin\n\n\nclass T(unittest.TestCase, Mixin):\n"
                           "    def test_cache(self):\n        c = self.Cache()\n        assert c == {}\n",
    "tests/test_clash.py": "from .base import DRYTest\n\n\nclass Evaluator:\n    pass\n\n\nclass T(DRYTest):\n"
                           "    def test_sum(self):\n        self.t('1', 1)\n",
    "tests/test_submodule.py": "from . import base\n\n\ndef test_x():\n    assert base.DRYTest\n",
    "pkg/_core.py": "def f():\n    return 1\n",
    "pkg/tests/helpers.py": "from .._core import f\n\n\ndef twice():\n    return 2 * f()\n",
    "pkg/tests/test_core.py": "from .._core import f\nfrom .helpers import twice\n\n\n"
                              "def test_twice():\n    assert twice() == 2 * f()\n",
}


async def _read(path: str) -> str | None:
    return FILES.get(path)


def _merged(path: str, roots: list[str], packages: tuple[str, ...] = ()) -> str:
    return asyncio.run(merged_source(path, FILES[path], _read, roots, packages))


def test_a_base_class_of_a_helper_module_is_written_out():
    text = snippet("tests/test_names.py::TestNames::test_sum", _merged("tests/test_names.py", ["tests"]))
    assert text is not None, "no snippet"
    assert "s = Evaluator()" in text and "def t(expr, should_be):\n    assert s.eval(expr) == should_be" in text
    assert "DRYTest" not in text and "from ." not in text and "__all__" not in text
    assert text.rstrip().endswith("t('1 + 1', 2)")
    compile(text, "<snippet>", "exec")


def test_a_package_init_helper_is_written_in():
    text = snippet("tests/test_mixin.py::T::test_cache", _merged("tests/test_mixin.py", ["tests"]))
    assert text is not None and "Cache = dict" in text


def test_helper_modules_outside_the_test_paths_are_never_written_in():
    assert _merged("tests/test_names.py", ["elsewhere"]) == FILES["tests/test_names.py"]


def test_a_name_that_would_change_meaning_or_a_submodule_keeps_the_import():
    clash = _merged("tests/test_clash.py", ["tests"])
    assert "from .base import DRYTest" in clash  # base.py's Evaluator is not this module's
    assert snippet("tests/test_clash.py::T::test_sum", clash) is None  # and a relative import is no snippet
    assert "from . import base" in _merged("tests/test_submodule.py", ["tests"])


def test_tests_inside_the_package_import_it_as_a_user_does():
    merged = _merged("pkg/tests/test_core.py", ["pkg/tests"], ("pkg",))
    text = snippet("pkg/tests/test_core.py::test_twice", merged)
    assert text is not None, merged
    assert "from pkg._core import f" in text and "def twice():" in text and "from ." not in text


def test_assert_raises_becomes_a_try_that_fails_without_the_error():
    merged = _merged("tests/test_names.py", ["tests"])
    text = snippet("tests/test_names.py::TestNames::test_unknown", merged)
    assert text is not None
    expected = ("try:\n    s.eval('x')\nexcept NameError_:\n    pass\n"
                "else:\n    raise AssertionError('expected NameError_')")
    assert expected in text
    assert snippet("tests/test_names.py::TestNames::test_unknown_cm", merged) is None  # `as cm` is read later


INHERITED = '''import sys
import unittest

from mylib import decode


class BaseDecode:
    EXPECT = "ascii"
    LONG = EXPECT + "-long"
    DECODER = staticmethod(decode)
    decode = staticmethod(decode)

    @unittest.skipIf(sys.maxunicode < 65536, "narrow build")
    def test_errors(self):
        self.assertEqual(self.DECODER(self.LONG), self.decode("x"))

    @unittest.expectedFailure
    def test_known(self):
        self.assertEqual(decode("y"), "y")


class TestDecode(BaseDecode, unittest.TestCase):
    pass
'''


def test_an_inherited_test_with_a_moot_decorator_and_dependent_attributes():
    text = snippet("tests/test_d.py::TestDecode::test_errors", INHERITED)
    assert text is not None
    assert "EXPECT = 'ascii'\nLONG = EXPECT + '-long'\nDECODER = decode" in text  # in order, staticmethod gone
    assert "decode = decode" not in text  # a staticmethod of the same name is the function itself
    assert "skipIf" not in text and text.rstrip().endswith("assert DECODER(LONG) == decode('x')")
    assert snippet("tests/test_d.py::TestDecode::test_known", INHERITED) is None  # a decorator that matters
    assert snippet("tests/test_d.py::TestDecode::test_missing", INHERITED) is None


FIXTURE_FILES = {
    "tests/conftest.py": '''import pytest

from mylib import Validator


@pytest.fixture
def val():
    """A fresh validator."""
    return Validator()


@pytest.fixture(params=["a", "b"])
def mode(request):
    return request.param
''',
    "tests/test_v.py": '''import os

import pytest

from mylib import Config, Validator


@pytest.fixture()
def spec(val):
    return Config(["x=integer"], validator=val)


@pytest.fixture
def here():
    return os.path.dirname(__file__)


@pytest.fixture
def made():
    cfg = Config([])
    yield cfg


def test_check(spec, val):
    assert spec.check(val, "x") == 1


def test_mode(mode):
    assert mode


def test_here(here):
    assert here


def test_made(made):
    assert made
''',
}


def test_plain_fixtures_of_the_module_and_its_conftest_become_assignments():
    async def read(path: str) -> str | None:
        return FIXTURE_FILES.get(path)

    merged = asyncio.run(merged_source("tests/test_v.py", FIXTURE_FILES["tests/test_v.py"], read, ["tests"]))
    text = snippet("tests/test_v.py::test_check", merged)
    assert text is not None, merged
    assert "from mylib import Validator\nfrom mylib import Config\n" in text  # Validator imported once
    assert "val = Validator()\nspec = Config(['x=integer'], validator=val)" in text  # dependencies first
    assert "@pytest.fixture" not in text and "def val" not in text
    assert text.rstrip().endswith("assert spec.check(val, 'x') == 1")
    for refused in ("test_mode", "test_here", "test_made"):  # parametrized, reads __file__, yields
        assert snippet(f"tests/test_v.py::{refused}", merged) is None, refused


def test_an_assertion_that_something_raises_is_no_comparison():
    from envfarm.suitegen.repro import repro

    source = "from toolz import merge\nfrom toolz.utils import raises\n\n\n" \
             "def test_merge():\n    assert raises(TypeError, lambda: merge(1))\n"
    found = repro("tests/test_m.py::test_merge", source)
    assert found is not None and found.compared is None  # not "TypeError gives ..., but lambda is expected"
