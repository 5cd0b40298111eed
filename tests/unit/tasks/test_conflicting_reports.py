"""A test pytest reported failing and a later line reports passing: someone else wrote that line."""

from __future__ import annotations

from envfarm.tasks.grading import conflicting_reports

CUT = "test_inflection.py::test_parameterize[Test"  # swebench's parser cuts node ids at a space


def test_a_later_passing_line_for_a_failed_test_is_found_even_for_cut_ids():
    log = ("FAILED test_inflection.py::test_parameterize[Test Thing-test-thing] - AssertionError: x\n"
           "PASSED test_inflection.py::test_ordinal[1-1st]\n"
           "=== 1 failed, 1 passed in 0.1s ===\n"
           "PASSED test_inflection.py::test_parameterize[Test Thing-test-thing]\n")
    assert conflicting_reports(log, [CUT]) == ["test_inflection.py::test_parameterize[Test Thing-test-thing]"]


def test_two_parametrizations_sharing_a_cut_id_are_two_tests():
    log = ("FAILED test_inflection.py::test_parameterize[Test Thing-test-thing] - AssertionError: x\n"
           "PASSED test_inflection.py::test_parameterize[Test Other-test-other]\n")
    assert conflicting_reports(log, [CUT]) == []


def test_tests_outside_the_lists_are_not_judged():
    log = "FAILED tests/test_a.py::test_x - boom\nPASSED tests/test_a.py::test_x\n"
    assert conflicting_reports(log, ["tests/test_b.py::test_y"]) == []
    assert conflicting_reports(log, ["tests/test_a.py::test_x"]) == ["tests/test_a.py::test_x"]
