"""Synthetic bugs in real projects: AST mutations, validated in sandboxes into SWE-bench rows.

`mutations` (the kinds), `edits` (minimal textual edits), `generate` (enumerate and order
mutants for a seed), `baseline` (clean results and coverage, once per project), `statement`
(issue-style problem statements from a real failing run), `suite` (parallel, resumable
validation), `summary` (docs/TASKS.md). The command is scripts/generate_suite.py.
"""

from envfarm.tasks.synth.generate import Mutant, mutants_of_file, order
from envfarm.tasks.synth.mutations import KINDS

__all__ = ["KINDS", "Mutant", "mutants_of_file", "order"]
