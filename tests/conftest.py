"""Settings shared by every test run.

Many tests commit to real temporary git repositories. A fresh machine (a new CI runner) has no git identity,
and git refuses to commit without one, so the tests bring their own through git's environment variables
unless the caller set them.
"""

from __future__ import annotations

import os

for _variable, _value in (
    ("GIT_AUTHOR_NAME", "filewcount tests"),
    ("GIT_AUTHOR_EMAIL", "tests@filewcount.invalid"),
    ("GIT_COMMITTER_NAME", "filewcount tests"),
    ("GIT_COMMITTER_EMAIL", "tests@filewcount.invalid"),
):
    os.environ.setdefault(_variable, _value)
