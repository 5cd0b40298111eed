"""Host resources stay bounded whatever the agent puts on its disk, and its writes stay its own.

The host process serves every sandbox on its node: a file the agent makes huge must be refused
before it is transferred (its size is looked at first), many empty files must trip the
watchdog as surely as many bytes do, and an editor write must never run as root (the archive
API extracts as root anywhere in the container).
"""

from __future__ import annotations

import asyncio
import resource

import pytest

from envfarm.env.editor import Editor, SandboxFileIO
from envfarm.sandbox.base import SandboxSpec
from envfarm.sandbox.docker_backend import DockerSandbox, FileTooLargeError

pytestmark = pytest.mark.docker

SMALL = {"cpus": 0.5, "memory": "512m", "pids": 64, "disk": "1g", "disk_check_s": 0.5}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(image: str, body, **spec):
    async def main():
        sb = await DockerSandbox.create(SandboxSpec(image=image, **{**SMALL, **spec}))
        try:
            return await body(sb)
        finally:
            await sb.close()

    return asyncio.run(main())


@pytest.mark.timeout(180)
def test_viewing_a_200mb_file_is_refused_before_transfer(inflection_image):
    async def body(sb):
        made = await sb.exec("head -c 200000000 /dev/zero | tr '\\0' 'x' | fold -w 99 > /testbed/huge.py && "
                             "ln -s /testbed/huge.py /testbed/link.py && echo ok", timeout=120)
        assert made.output.strip().endswith("ok"), made.output
        editor = Editor(SandboxFileIO(sb))
        before = _peak_rss_mb()
        answers = [await editor.run({"command": "view", "path": p}) for p in ("/testbed/huge.py", "link.py")]
        answers.append(await editor.run({"command": "view", "path": "/testbed/huge.py", "view_range": [1, 3]}))
        answers.append(await editor.run({"command": "str_replace", "path": "/testbed/huge.py",
                                         "old_str": "xx", "new_str": "y"}))
        answers.append(await editor.run({"command": "insert", "path": "/testbed/huge.py",
                                         "insert_line": 0, "new_str": "y"}))
        answers.append(await editor.run({"command": "create", "path": "/testbed/huge.py", "file_text": "y"}))
        grown = _peak_rss_mb() - before
        with pytest.raises(FileTooLargeError):
            await sb.read_file("/testbed/huge.py")  # the archive API refuses from its header alone
        small = await editor.run({"command": "view", "path": "/testbed/setup.py", "view_range": [1, 2]})
        return answers, grown, small

    answers, grown, small = _run(inflection_image, body)
    for answer in answers:
        assert answer.startswith("Error:") and "more than the editor reads" in answer, answer[:300]
        assert "sed -n" in answer
    # the peak resident size of this process (the host's role) did not grow by the file's size
    assert grown < 50, f"peak RSS grew by {grown:.0f} MB while a 200 MB file was viewed"
    assert "lines 1-2" in small


@pytest.mark.timeout(240)
@pytest.mark.parametrize("where", ["/testbed/many"])
def test_300k_empty_files_trip_the_watchdog(inflection_image, where):
    async def body(sb):
        # three levels of folders, 300,000 empty files: no bytes to speak of, an inode each
        res = await sb.exec(f"mkdir -p {where} && cd {where} && for i in $(seq 300); do mkdir d$i; "
                            "(cd d$i && seq 1000 | xargs touch); done; sleep 30", timeout=200)
        after = await sb.exec("rm -rf " + where + " && echo cleaned", timeout=120)
        return res, after, sb.inodes_used, sb.disk_used

    res, after, inodes, used = _run(inflection_image, body, inodes=50_000)
    assert res.limit == "disk", (res.limit, res.output[-300:], inodes, used)
    assert "new files and folders" in res.note
    assert used < 200 << 20  # it was the file count, not the bytes, that tripped it
    assert after.ok and "cleaned" in after.output


@pytest.mark.timeout(120)
def test_editor_writes_go_through_the_sandbox_user(inflection_image):
    targets = ["/etc/profile.d/zz_agent.sh", "/usr/lib/python3/dist-packages/sitecustomize.py",
               "/usr/lib/python3.11/zz_agent.py", "/etc/passwd", "/opt/envfarm/pycache/x.pyc"]

    async def body(sb):
        editor = Editor(SandboxFileIO(sb))
        big = "# padding\n" * 60_000  # past one session chunk: the multi-chunk path is refused too
        answers = {}
        for path in targets:
            answers[path] = [await editor.run({"command": "create", "path": path, "file_text": "import os\n"}),
                             await editor.run({"command": "create", "path": path, "file_text": big})]
        answers["/etc/passwd-edit"] = [await editor.run({"command": "str_replace", "path": "/etc/passwd",
                                                         "old_str": "root:x:0:0", "new_str": "root::0:0"})]
        check = await sb.exec("ls /etc/profile.d/zz_agent.sh /usr/lib/python3/dist-packages/sitecustomize.py "
                              "/usr/lib/python3.11/zz_agent.py /opt/envfarm/pycache/x.pyc 2>&1; "
                              "grep -c '^root:x:0:0' /etc/passwd")
        own = await editor.run({"command": "create", "path": "/testbed/big_note.txt", "file_text": big})
        mine = await sb.exec("stat -c '%U %s' /testbed/big_note.txt")
        return answers, check.output, own, mine.output

    answers, listing, own, mine = _run(inflection_image, body)
    for path, replies in answers.items():
        for reply in replies:
            assert reply.startswith("Error:") and "permission denied" in reply, (path, reply[:200])
    assert listing.count("No such file") == 4 and listing.strip().endswith("1"), listing
    assert "created" in own
    assert mine.split() == ["agent", str(len("# padding\n" * 60_000))]
