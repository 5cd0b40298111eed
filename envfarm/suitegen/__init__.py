"""Offline suite generation: synthetic bugs in real projects, validated into SWE-bench rows.

Tooling that builds and checks the builtin suite (envfarm/tasks/builtin/); nothing at run time
imports it. It sits beside the runtime task layer and uses it (`envfarm.tasks` for the schema,
grading and set-up; `envfarm.sandbox` for images and sandboxes), never the other way round.

`mutations` (the kinds), `edits` (minimal textual edits), `generate` (enumerate and order
mutants for a seed), `baseline` (clean results and coverage, once per project), `statement`
(issue-style problem statements from a real failing run), `suite` (parallel, resumable
validation), `summary` (docs/TASKS.md), `derive` (one candidate bug in a sandbox -> a validated
Task), `eval_script` (swebench-shaped eval scripts). The command is scripts/generate_suite.py.
"""

from envfarm.suitegen.generate import Mutant, mutants_of_file, order
from envfarm.suitegen.mutations import KINDS

__all__ = ["KINDS", "Mutant", "mutants_of_file", "order"]
