"""Task images made the way public SWE-bench-style datasets make them, and their rows.

Not from envfarm's base image (which has the `agent` user and a system-wide safe.directory):
FROM the plain Debian root file system, the repository copied to /testbed as root, a full git
history (an import commit, then the regression that is the task's base commit), root user.
Three variants:

- `plain`: just that;
- `conda`: the tests run in a conda-like environment (/opt/miniconda3, `conda activate
  testbed`) that provides `python`; a plain shell has only `python3`, so an agent's shell that
  did not get the activation cannot run the eval script's test command;
- `future`: the upstream fix sits after the base commit: on a branch, tagged, in the reflog,
  in a stash, in packed refs, in a pack marked .keep and checked out in a second work tree
  (/opt/wt-fix), with a telling commit message.

Rows are in SWE-bench 5.x's layout (FAIL_TO_PASS as JSON strings, `image`, `eval_script`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from envfarm.sandbox.docker_backend import docker_client
from envfarm.sandbox.images import _build_rootfs_image
from envfarm.tasks.loading import load_builtin
from envfarm.tasks.schema import Task

SOURCE_IMAGE = "envfarm/repo-inflection:0.5.1"
FIX_MESSAGE = "Fix the regression (upstream fix, do not leak)"
HEREDOC = "EOF_114329324912"

CONDA = r"""mkdir -p /opt/miniconda3/bin /opt/miniconda3/envs && \
    python3 -m venv --without-pip --system-site-packages /opt/miniconda3/envs/testbed && \
    printf '%s\n' 'conda() { if [ "$1" = activate ]; then export CONDA_DEFAULT_ENV=$2 \
      PATH=/opt/miniconda3/envs/$2/bin:$PATH; fi; }' > /opt/miniconda3/bin/activate"""

FUTURE_MARKER = "upstream-fix-marker-7f3a"  # in the later commit's code only
FUTURE = f"""git checkout -q -b upstream-fix && git apply /tmp/ctx/fix.diff && \
    echo '# {FUTURE_MARKER}' >> inflection/__init__.py && \
    git commit -qam '{FIX_MESSAGE}' && git tag -a v9.9-fixed -m 'release with the fix' && \
    git checkout -q - && git apply /tmp/ctx/fix.diff && echo '# {FUTURE_MARKER} stash' >> inflection/__init__.py && \
    git stash -q && git pack-refs --all && git worktree add -q /opt/wt-fix upstream-fix && \
    git repack -q -a -d && for p in .git/objects/pack/*.pack; do touch "${{p%.pack}}.keep"; done"""

DOCKERFILE = """FROM {rootfs}
COPY ctx/ /tmp/ctx/
RUN mkdir /testbed && cd /testbed && \\
    tar --no-same-owner --strip-components=1 --exclude=testbed/.git -xf /tmp/ctx/testbed.tar && \\
    git init -q && git config user.name upstream && git config user.email upstream@example.org && \\
    git add -A && git commit -qm 'import' && {bug} && \\
    {extra}
RUN rm -rf /tmp/ctx
WORKDIR /testbed
"""

VARIANTS = {"plain": "true", "conda": CONDA, "future": FUTURE, "smith": CONDA}
BUG_COMMIT = "git apply /tmp/ctx/bug.diff && git commit -qam 'refactor'"
TASK_PICKS = {"plain": 0, "conda": 5, "future": 11}


def eval_script(base: str, variant: str, test_patch: str = "") -> str:
    """An eval script in swebench 5.x's shape: activation, test files restored, the test patch
    applied from a here-document, the tests between the output markers, files restored."""
    activate = "source /opt/miniconda3/bin/activate\nconda activate testbed\n" if variant == "conda" else ""
    python = "python" if variant == "conda" else "python3"
    return (
        "#!/bin/bash\nset -uxo pipefail\n" + activate + "cd /testbed\n"
        "git config --global --add safe.directory /testbed\n"
        f"git checkout {base} -- test_inflection.py\n"
        f"git apply -v - <<'{HEREDOC}'\n{test_patch}\n{HEREDOC}\n"
        ": '>>>>> Start Test Output'\n"
        f"{python} -m pytest -rA -p no:cacheprovider test_inflection.py\n"
        ": '>>>>> End Test Output'\n"
        f"git checkout {base} -- test_inflection.py\n"
    )


def _source_tree() -> bytes:
    """The project's clean source tree as a tar stream (entries under `testbed/`)."""
    container = docker_client().containers.create(SOURCE_IMAGE, ["true"])
    try:
        stream, _ = container.get_archive("/testbed")
        return b"".join(stream)
    finally:
        container.remove(force=True)


def _build(variant: str, task: Task, tree: bytes, workdir: Path) -> str:
    tag = f"envfarm-test/foreign-{variant}:1"
    ctx = workdir / variant
    (ctx / "ctx").mkdir(parents=True, exist_ok=True)
    (ctx / "ctx" / "testbed.tar").write_bytes(tree)
    (ctx / "ctx" / "bug.diff").write_text(task.bug_patch)
    (ctx / "ctx" / "fix.diff").write_text(task.patch)
    bug = "true" if variant == "smith" else BUG_COMMIT  # SWE-smith's images hold the clean repository
    rootfs = _build_rootfs_image()  # present where the base image was built offline; made here otherwise
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(rootfs=rootfs, extra=VARIANTS[variant], bug=bug))
    proc = subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building {tag} failed: {proc.stderr[-2000:]}")
    return tag


def _head(image: str) -> str:
    out = docker_client().containers.run(image, ["git", "-C", "/testbed", "rev-parse", "HEAD"], user="root",
                                         remove=True, network_mode="none")
    return out.decode().strip()


def build_foreign_rows(workdir: Path) -> list[dict]:
    """Build the three images (Docker's cache makes a rebuild cheap) and return their rows."""
    builtin = [t for t in load_builtin("inflection") if t.bug_patch and not t.instance_id.startswith("inflection__ord")]
    tree = _source_tree()
    rows = []
    for variant, pick in TASK_PICKS.items():
        task = builtin[pick]
        image = _build(variant, task, tree, workdir)
        base = _head(image)
        rows.append({
            "instance_id": f"upstream__inflection-{variant}",
            "repo": "upstream/inflection",
            "base_commit": base,
            "problem_statement": task.problem_statement,
            "patch": task.patch,
            "test_patch": "",
            "FAIL_TO_PASS": json.dumps(task.FAIL_TO_PASS),
            "PASS_TO_PASS": json.dumps(task.PASS_TO_PASS),
            "version": "0.5.1",
            "environment_setup_commit": base,
            "created_at": "2024-01-01T00:00:00Z",
            "image": image,
            "eval_script": eval_script(base, variant),
            "log_parser": "parse_log_pytest",
            "eval_type": "pass_and_fail",
        })
    return rows


def build_swe_smith_row(workdir: Path) -> dict:
    """One row in SWE-smith's layout (`image_name`, `patch` introducing the bug into the image's
    clean repository, its mirror's `base_commit`) plus the `eval_script` a user adds: the tests
    restored from HEAD, in the conda-like environment SWE-smith's images have."""
    task = [t for t in load_builtin("inflection") if t.bug_patch and not t.instance_id.startswith("inflection__ord")][3]
    image = _build("smith", task, _source_tree(), workdir)
    script = eval_script("HEAD", "conda")
    return {
        "instance_id": "upstream__inflection.0a1b2c3d.func_pm_remove_cond__abcd1234",
        "repo": "swesmith/upstream__inflection.0a1b2c3d",
        "patch": task.bug_patch,
        "FAIL_TO_PASS": task.FAIL_TO_PASS,
        "PASS_TO_PASS": task.PASS_TO_PASS,
        "created_at": "2025-04-01T00:00:00",
        "image_name": image,
        "base_commit": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
        "problem_statement": task.problem_statement,
        "eval_script": script,
    }


def wrong_patch(task: Task) -> str:
    """A patch that applies and changes code without fixing anything (a comment line)."""
    path = "inflection/__init__.py"
    return (f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,1 +1,2 @@\n"
            f"+# an unrelated change\n{_first_line(task)}\n")


def _first_line(task: Task) -> str:
    client = docker_client()
    data = client.containers.run(task.image, ["head", "-n", "1", "/testbed/inflection/__init__.py"], user="root",
                                 remove=True, network_mode="none")
    return " " + data.decode().rstrip("\n")


def append_patch(task: Task, code: str, path: str = "inflection/__init__.py") -> str:
    """A git diff that appends `code` to `path` at the task's base commit."""
    import difflib

    old = docker_client().containers.run(task.image, ["git", "-C", "/testbed", "show", f"{task.base_commit}:{path}"],
                                         user="root", remove=True, network_mode="none").decode()
    new = old + ("" if old.endswith("\n") else "\n") + code
    body = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"))
    return f"diff --git a/{path} b/{path}\n{body}"
