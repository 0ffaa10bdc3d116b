"""Tests of the harness's stand-in kubelet for load-test Job pods (tests/harness/jobs.py): the host's argv, the log."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "harness"))
import jobs

AB = shutil.which("ab") or "/usr/bin/ab"
BACKENDS = {"filewcount/filewcount:80": "127.0.0.1:41000", "git-server/git-server:8080": "127.0.0.1:41001"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [
                "/bin/sh",
                "-c",
                "s",
                "x",
                "/usr/local/apache2/bin/ab",
                "-n",
                "5",
                "http://filewcount.filewcount.svc.cluster.local/",
            ],
            ["/bin/sh", "-c", "s", "x", AB, "-n", "5", "http://127.0.0.1:41000/"],
        ),
        (["ab", "http://git-server.git-server.svc.cluster.local:8080/a?b=c"], [AB, "http://127.0.0.1:41001/a?b=c"]),
        # A Service without a backend, or a URL outside the cluster, is left as it is.
        (["ab", "http://missing.filewcount.svc.cluster.local/"], [AB, "http://missing.filewcount.svc.cluster.local/"]),
        (["ab", "http://example.org/"], [AB, "http://example.org/"]),
        (["/bin/sh", "-c", "echo ab"], ["/bin/sh", "-c", "echo ab"]),
    ],
)
def test_host_argv(argv, expected):
    assert jobs.host_argv(argv, BACKENDS) == expected


def test_cri_log_has_one_stdout_line_per_output_line():
    log = jobs.cri_log(b"one\ntwo\n\nlast without newline")
    lines = log.splitlines()
    assert len(lines) == 4
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    assert [re.sub(stamp, "T", line) for line in lines] == [
        "T stdout F one",
        "T stdout F two",
        "T stdout F ",
        "T stdout F last without newline",
    ]
