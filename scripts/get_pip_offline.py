"""Offline stand-in for the get-pip script that ansible-test downloads.

ansible-test bootstraps pip in each virtual environment it creates by running
``~/.ansible/test/cache/get_pip_<version>.py`` with pip-install arguments (for example
``pip==24.2 --disable-pip-version-check --no-setuptools --no-wheel``). The real script is
downloaded from a host these machines cannot reach, so ``make sanity`` installs this file in
its place. It bootstraps pip with the standard library's ``ensurepip`` (no network) and then
lets that pip install the requested version from the configured package index.

``ensurepip`` scrubs every ``PIP_*`` variable and points ``PIP_CONFIG_FILE`` at /dev/null so
that the bundled wheel installs in isolation. The second step must see the user's pip
configuration (index URL, find-links, CA bundle), so it runs with the environment captured
before ensurepip ran.
"""

from __future__ import annotations

import os
import subprocess
import sys

# Flags that only the real get-pip understands; pip itself would reject them.
_GET_PIP_ONLY_FLAGS = {"--no-setuptools", "--no-wheel"}


def _pip_install_args(argv: list[str]) -> list[str]:
    """Return the arguments for ``pip install``, without get-pip's own flags."""
    return [arg for arg in argv if arg not in _GET_PIP_ONLY_FLAGS]


def main() -> int:
    original_env = dict(os.environ)
    bootstrap = subprocess.run(
        [sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"],
        check=False,
        env=original_env,
    )
    if bootstrap.returncode != 0:
        sys.stderr.write(f"ensurepip could not bootstrap pip in {sys.prefix}\n")
        return bootstrap.returncode
    args = _pip_install_args(sys.argv[1:])
    if not args:
        return 0
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--upgrade", *args],
        check=False,
        env=original_env,
    )
    return install.returncode


if __name__ == "__main__":
    sys.exit(main())
