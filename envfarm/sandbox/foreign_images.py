"""Images envfarm did not build (public SWE-bench-style images), adapted once per image and node.

Public task images are made for a harness that runs everything as root: no `agent` user, a
root-owned `/testbed`, a test environment that only the eval script activates, and a full clone
whose history can hold the upstream fix (later commits, tags, reflog entries). An agent's
sandbox needs an unprivileged user that may edit `/testbed`, the test environment in its shell,
and no way to read the future. So each such image gets a derived image, made once per node
(`adapt_image`): a container of the source image runs ADAPT_SCRIPT as root and is committed as

    envfarm-adapted/<source name>:<hash of source image id, base commit, activation, version>

The tag changes when the source image changes (its id is in the hash), so a re-pulled image is
adapted again; an adapted image is found by its tag and never rebuilt. The derived image keeps
the source's user (root), so a grading sandbox that runs as the image's own user (SandboxSpec
user None) runs the eval script as swebench's harness does; agents run as `agent`.

Images envfarm built (label `envfarm.spec`, also inherited by images built FROM envfarm's base)
and adapted images (label `envfarm.adapted-from`) are used as they are.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading

import docker.errors
import requests

from envfarm.errors import ImageMissingError, SandboxError
from envfarm.sandbox.base import ACTIVATE_PATH
from envfarm.sandbox.docker_backend import docker_client
from envfarm.sandbox.node_lock import NodeLock

ADAPT_VERSION = "3"
LABEL_FROM = "envfarm.adapted-from"
LABEL_BASE = "envfarm.adapted-base"
NATIVE_LABELS = ("envfarm.spec", LABEL_FROM)

# $1: the commit the agent starts from ("" for none: a bug-patch task starts from HEAD);
# $2: the shell lines that activate the test environment, written to $3. Runs as root in the source image.
# Exit codes 10-14 are the image's faults, reported to the user (see ImageUnusableError).
ADAPT_SCRIPT = r"""set -u
base=$1 activation=$2
fail() { echo "ENVFARM_ADAPT: $2"; exit "$1"; }
[ -d /testbed ] || fail 10 "the image has no /testbed folder: it must hold the task's repository there"
command -v git >/dev/null 2>&1 || fail 11 "the image has no git: install git in it"
command -v bash >/dev/null 2>&1 || fail 13 "the image has no bash: sandboxes need /bin/bash"
[ -d /testbed/.git ] || fail 12 "/testbed is not a git repository"
if ! id -u agent >/dev/null 2>&1; then
  if command -v useradd >/dev/null 2>&1; then
    if getent passwd 1000 >/dev/null 2>&1; then useradd --create-home --shell /bin/bash agent
    else useradd --create-home --uid 1000 --shell /bin/bash agent; fi
  else
    echo 'agent:x:1000:1000::/home/agent:/bin/bash' >>/etc/passwd
    echo 'agent:x:1000:' >>/etc/group
    mkdir -p /home/agent && chown 1000:1000 /home/agent
  fi || fail 14 "could not add the user agent"
fi
git config --system safe.directory '*'
git config --system --get user.name >/dev/null || git config --system user.name envfarm
git config --system --get user.email >/dev/null || git config --system user.email envfarm@localhost
cd /testbed || fail 10 "cannot enter /testbed"
[ -n "$base" ] || base=$(git rev-parse -q --verify HEAD) || fail 12 "/testbed has no commit checked out"
git cat-file -e "$base^{commit}" 2>/dev/null || fail 12 "the base commit $base is not in /testbed's repository"
if [ "$(git rev-parse HEAD 2>/dev/null)" != "$(git rev-parse "$base^{commit}")" ]; then
  git checkout -q --detach "$base" || fail 12 "cannot check out the base commit $base in /testbed"
fi
base=$(git rev-parse "$base^{commit}")
git update-ref --no-deref HEAD "$base"
# Nothing after the base commit stays reachable: every ref but tags on its own history goes,
# then reflogs, stashes, leftovers of merges and rebases, replace refs and grafts, alternates,
# commit graphs, bitmaps and .keep marks, other work trees; `repack -a -d` keeps only reachable
# objects and `prune` the rest.
git worktree list --porcelain | sed -n 's/^worktree //p' | while IFS= read -r wt; do
  [ "$wt" = /testbed ] || rm -rf "$wt"
done
git for-each-ref --format='%(refname)' | while IFS= read -r ref; do
  case $ref in
    refs/tags/*) git merge-base --is-ancestor "$ref^{commit}" "$base" 2>/dev/null && continue ;;
  esac
  git update-ref -d "$ref"
done
rm -rf .git/logs .git/refs/original .git/rebase-merge .git/rebase-apply .git/worktrees .git/lost-found \
  .git/ORIG_HEAD .git/FETCH_HEAD .git/MERGE_HEAD .git/MERGE_MSG .git/MERGE_RR .git/COMMIT_EDITMSG \
  .git/SQUASH_MSG .git/CHERRY_PICK_HEAD .git/REVERT_HEAD .git/AUTO_MERGE .git/BISECT_LOG .git/rr-cache \
  .git/info/grafts .git/objects/info/commit-graph .git/objects/info/commit-graphs \
  .git/objects/pack/multi-pack-index .git/objects/pack/*.bitmap .git/objects/pack/*.keep .git/gc.log
git -c core.hooksPath=/dev/null repack -a -d -q || fail 15 "git repack failed in /testbed"
rm -f .git/objects/info/alternates
git prune --expire=now || fail 15 "git prune failed in /testbed"
# the agent owns the work tree; the image's root (without capabilities in a sandbox, so no
# override of file permissions) grades in it through the group
chown -R agent:0 /testbed && chmod -R g+rwX /testbed
mkdir -p /opt/envfarm/pycache && chmod 755 /opt/envfarm
printf '%s\n' "$activation" >"$3" && chmod 644 "$3"
echo "ENVFARM_ADAPT: ok $base"
"""


class ImageUnusableError(ImageMissingError):
    """The image is here but cannot serve as a task image (no /testbed, no git, no base commit):
    a set-up error that names what is missing, never retried."""


_process_lock = threading.Lock()
_adapted: dict[tuple[str, str, str], str] = {}


def is_native(labels: dict[str, str] | None) -> bool:
    """Built by envfarm (or FROM its base) or already adapted: used as it is."""
    return any(key in (labels or {}) for key in NATIVE_LABELS)


def adapted_tag(source: str, source_id: str, base_commit: str, activation: str) -> str:
    """The derived image's tag: a function of the source image's id and what was adapted."""
    digest = hashlib.sha256(json.dumps([source_id, base_commit, activation, ADAPT_VERSION]).encode()).hexdigest()
    name = re.sub(r"[^a-z0-9._-]+", "-", source.rsplit("@", 1)[0].split("/")[-1].split(":")[0].lower())
    return f"envfarm-adapted/{name.strip('.-_') or 'image'}:{digest[:16]}"


def adapt_image(image: str, base_commit: str = "", activation: str = "") -> str:
    """The image to start sandboxes from for a task of `image` at `base_commit` (blocking).

    `image` itself when envfarm built it; otherwise its adapted image, built on first use and
    found by tag after that (one build per node even when several processes ask at once: a
    file lock). Raises ImageMissingError (absent) or ImageUnusableError (unfit), never a
    retried infrastructure fault for a fault of the image.
    """
    key = (image, base_commit, activation)
    if key in _adapted:
        return _adapted[key]
    client = docker_client()
    try:
        source = client.images.get(image)
    except docker.errors.ImageNotFound:
        how = ("build it with `python -m envfarm.sandbox.images build`" if image.startswith("envfarm/")
               else f"get it with `docker pull {image}`")
        raise ImageMissingError(f"image {image!r} is not on this machine: {how}, or load an exported copy with "
                                "`docker load -i <file>.tar`, on every node") from None
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise SandboxError(f"cannot look up image {image!r}: {exc}") from exc
    if is_native(source.labels):
        _adapted[key] = image
        return image
    tag = adapted_tag(image, source.id, base_commit, activation)
    with _process_lock, NodeLock(tag, prefix="envfarm-adapt"):
        if not _exists(tag):
            _build(image, source, tag, base_commit, activation)
    _adapted[key] = tag
    return tag


def _exists(tag: str) -> bool:
    try:
        docker_client().images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _build(image: str, source, tag: str, base_commit: str, activation: str) -> None:
    client = docker_client()
    try:
        container = client.containers.create(
            image, ["-c", ADAPT_SCRIPT, "adapt", base_commit, activation, ACTIVATE_PATH], entrypoint=["/bin/sh"],
            user="root", network_mode="none", working_dir="/",
        )
    except docker.errors.APIError as exc:
        raise SandboxError(f"cannot start a container of {image!r} to adapt it: {exc}") from exc
    try:
        container.start()
        code = container.wait(timeout=1800).get("StatusCode")
        log = container.logs().decode("utf-8", errors="replace")
        if code != 0:
            said = [line.partition("ENVFARM_ADAPT: ")[2] for line in log.splitlines() if "ENVFARM_ADAPT: " in line]
            why = said[-1] if said else f"the adaptation script failed (exit {code}): {log[-400:]}"
            raise ImageUnusableError(f"image {image!r} cannot serve as a task image: {why}")
        config = source.attrs.get("Config") or {}
        repo, _, version = tag.rpartition(":")
        # the source's entrypoint and command back (a container that was run to adapt it has the
        # script's); sandboxes set their own entrypoint, PID 1, whatever the image says
        entrypoint = config.get("Entrypoint") or ["/usr/bin/env"]
        changes = [f"ENTRYPOINT {json.dumps(entrypoint)}", f"CMD {json.dumps(config.get('Cmd') or ['/bin/bash'])}",
                   f"LABEL {LABEL_FROM}={source.id} {LABEL_BASE}={base_commit or 'HEAD'}"]
        if config.get("User"):
            changes.append(f"USER {config['User']}")
        container.commit(repository=repo, tag=version, changes=changes)
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        raise SandboxError(f"adapting image {image!r} failed: {exc}") from exc
    finally:
        try:
            container.remove(force=True)
        except docker.errors.DockerException:
            pass
