"""Read a SWE-bench predictions file and plan what to grade, as swebench's run_evaluation does.

The file is JSONL (one prediction a line), a JSON list of predictions, or a JSON object of
instance id -> prediction (SWE-agent's form), or the word `gold` (every task's own patch, model
name `gold`). Each prediction is an object with `instance_id`, `model_name_or_path` and
`model_patch` (a string, or null for no patch). Anything else is refused up front with the
file and the line (or entry) that is wrong: a run that fails half-way through on a malformed
entry has spent its time for nothing.

What swebench does and this keeps: a prediction for an instance that is not among the tasks
stops the run; an empty or null `model_patch` is not graded and counts in
`empty_patch_instances`. What this adds: swebench keeps the last of two predictions for one
instance without a word; here identical repeats are merged and differing ones are an error
naming both lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envfarm.errors import UserInputError

REQUIRED = ("instance_id", "model_name_or_path", "model_patch")


class PredictionsError(UserInputError):
    """The predictions file is malformed or names unknown instances; the message says where."""


@dataclass(frozen=True)
class Prediction:
    """One prediction and where it came from (file:line or file entry), for error messages."""

    instance_id: str
    model_name_or_path: str
    model_patch: str | None
    where: str

    @property
    def model_dir(self) -> str:
        """The model's folder name in the logs, as swebench spells it."""
        return self.model_name_or_path.replace("/", "__")

    @property
    def empty(self) -> bool:
        """No patch at all (swebench's empty_patch: "" or null): not graded."""
        return self.model_patch in ("", None)

    def as_swebench(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "model_name_or_path": self.model_name_or_path,
                "model_patch": self.model_patch}


def read_predictions(spec: str) -> list[Prediction]:
    """Every prediction in the file, validated and without repeats, in file order."""
    path = Path(spec).expanduser()
    if not path.is_file():
        raise PredictionsError(f"{spec}: no such predictions file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PredictionsError(f"{path}: not UTF-8 text (byte {exc.start}): a predictions file is JSON") from None
    as_json = path.suffix == ".json" or (path.suffix != ".jsonl" and _one_json_document(text))
    entries = list(_json_entries(path, text) if as_json else _jsonl_entries(path, text))
    if not entries:
        raise PredictionsError(f"{path}: no predictions in this file")
    return _dedupe([_validate(row, where) for row, where in entries])


def gold_predictions(tasks: list[Any]) -> list[Prediction]:
    """swebench's `-p gold`: each task's own patch under the model name `gold`."""
    return [Prediction(t.instance_id, "gold", t.patch, f"gold:{t.instance_id}") for t in tasks]


def _one_json_document(text: str) -> bool:
    """For a file named neither .json nor .jsonl: a JSON list, or an object of objects."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text.lstrip().startswith("[")  # a broken list: say so as JSON, not line by line
    return isinstance(data, list) or (isinstance(data, dict) and bool(data)
                                      and all(isinstance(v, dict) for v in data.values()))


def _jsonl_entries(path: Path, text: str):
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line), f"{path}:{lineno}"
        except json.JSONDecodeError as exc:
            raise PredictionsError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
                                   "a .jsonl file holds one JSON object a line") from None


def _json_entries(path: Path, text: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PredictionsError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(data, list):
        lines = _element_lines(text)
        for i, row in enumerate(data):
            yield row, f"{path}:{lines[i]}" if i < len(lines) else f"{path}[{i}]"
    elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        for key, row in data.items():  # SWE-agent's {instance_id: prediction}
            yield row, f"{path}[{key!r}]"
    else:
        raise PredictionsError(f"{path}: expected a list of predictions or an object of instance id -> "
                               f"prediction, got {type(data).__name__}")


def _element_lines(text: str) -> list[int]:
    """The line each element of a top-level JSON list starts on (the text is known to parse)."""
    decoder, lines, i = json.JSONDecoder(), [], text.index("[") + 1
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return lines
        lines.append(text.count("\n", 0, i) + 1)
        _, i = decoder.raw_decode(text, i)


def _validate(row: Any, where: str) -> Prediction:
    if not isinstance(row, dict):
        raise PredictionsError(f"{where}: a prediction is an object with {', '.join(REQUIRED)}; "
                               f"got {type(row).__name__}")
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        rid = f" (instance_id {row['instance_id']!r})" if isinstance(row.get("instance_id"), str) else ""
        raise PredictionsError(f"{where}{rid}: missing field(s) {', '.join(missing)}; a prediction needs "
                               f"{', '.join(REQUIRED)} (model_patch may be null)")
    for key in ("instance_id", "model_name_or_path"):
        if not isinstance(row[key], str) or not row[key].strip():
            raise PredictionsError(f"{where}: {key} must be a non-empty string, got {row[key]!r}")
    if row["model_patch"] is not None and not isinstance(row["model_patch"], str):
        raise PredictionsError(f"{where} (instance_id {row['instance_id']!r}): model_patch must be a string "
                               f"(a diff) or null, got {type(row['model_patch']).__name__}")
    return Prediction(row["instance_id"], row["model_name_or_path"], row["model_patch"], where)


def _dedupe(preds: list[Prediction]) -> list[Prediction]:
    seen: dict[str, Prediction] = {}
    for pred in preds:
        first = seen.get(pred.instance_id)
        if first is None:
            seen[pred.instance_id] = pred
        elif (first.model_name_or_path, first.model_patch) != (pred.model_name_or_path, pred.model_patch):
            raise PredictionsError(f"{pred.where}: a second, different prediction for {pred.instance_id!r} "
                                   f"(the first is at {first.where}); keep one per instance")
    return list(seen.values())


@dataclass
class Plan:
    """What a run grades: the predictions to run, those with no patch, those already graded."""

    to_grade: list[Prediction]
    empty: list[Prediction]
    already_done: list[Prediction]


def plan(preds: list[Prediction], task_ids: set[str], done: set[str]) -> Plan:
    """Split predictions as run_evaluation does; unknown instance ids stop the run.

    `done`: instance ids whose report.json this run already has (a re-run grades only the rest,
    as swebench's run_evaluation does).
    """
    unknown = [p for p in preds if p.instance_id not in task_ids]
    if unknown:
        shown = ", ".join(f"{p.instance_id!r} ({p.where})" for p in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise PredictionsError(f"{len(unknown)} prediction(s) for instances that are not among the tasks: "
                               f"{shown}{more}; check --tasks (and --instance-ids)")
    empty = [p for p in preds if p.empty]
    rest = [p for p in preds if not p.empty]
    return Plan(to_grade=[p for p in rest if p.instance_id not in done], empty=empty,
                already_done=[p for p in rest if p.instance_id in done])
