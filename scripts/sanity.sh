#!/usr/bin/env bash
# Run `ansible-test sanity` offline from a temporary ansible_collections/filewcount/gitops tree.
#
# ansible-test must run from inside ansible_collections/<namespace>/<name>; the repository root is not laid out
# like that, so the tracked files (plus untracked, not ignored ones) are copied into a temporary tree.
# ansible-test downloads a get-pip script into ~/.ansible/test/cache; that host is not reachable here, so the
# offline stand-in scripts/get_pip_offline.py is put in its place when the cache holds nothing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
python_version=${SANITY_PYTHON:-3.11}
# The pip version ansible-test bootstraps (24.2 for ansible-core 2.19), read from ansible-test itself.
pip_version=$("$venv/bin/python" -c '
from types import SimpleNamespace
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(SimpleNamespace(version="'"$python_version"'"))["pip"])')
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -s "$cache" ]; then
  mkdir -p "$(dirname "$cache")"
  cp "$repo/scripts/get_pip_offline.py" "$cache"
  echo "sanity: installed the offline get-pip stand-in at $cache"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/filewcount/gitops"
mkdir -p "$dest"
cd "$repo"
git ls-files -z --cached --others --exclude-standard \
  | grep -zv -e '^collections/' -e '^tests/output/' \
  | tar --null --files-from=- --ignore-failed-read -cf - \
  | tar -xf - -C "$dest"
cd "$dest"
git init -q && git add -A >/dev/null 2>&1
export PATH="$venv/bin:$PATH"
set +e
ansible-test sanity --venv --python "$python_version" --color no "$@"
rc=$?
set -e
if [ -d "$dest/tests/output" ]; then
  rm -rf "$repo/tests/output/sanity"
  mkdir -p "$repo/tests/output"
  cp -r "$dest/tests/output/." "$repo/tests/output/" 2>/dev/null || true
fi
exit $rc
