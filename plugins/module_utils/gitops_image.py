# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change a container image tag in a GitOps manifest, commit it and push it to the sync source.

Plain Python (imports without Ansible) behind the module ``filewcount.gitops.gitops_image_tag``. Git is driven
through an injected ``run(argv, cwd) -> (rc, stdout, stderr)`` callable, so the module can pass
``AnsibleModule.run_command`` and the tests can use real git repositories.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

try:  # PyYAML is a dependency of ansible-core; the check is skipped if it is missing.
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

Runner = Callable[[Sequence[str], str], "tuple[int, str, str]"]

DEFAULT_TAG_PATTERN = r"^v?[0-9]+\.[0-9]+(\.[0-9]+)?$"
# Who commits when git has no identity of its own (a fresh machine): like the Flux identity flux_bootstrap uses.
DEFAULT_IDENTITY = {"user.name": "filewcount.gitops", "user.email": "filewcount-gitops@localhost"}
_OCI_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class GitopsImageError(Exception):
    """Base class: the message is one sentence naming the problem and the fix."""


class InvalidTagError(GitopsImageError):
    pass


class ImageNotFoundError(GitopsImageError):
    pass


class DirtyTreeError(GitopsImageError):
    pass


class GitCommandError(GitopsImageError):
    pass


class RemoteAheadError(GitopsImageError):
    pass


# ----------------------------------------------------------------------------------------------- pure logic
def validate_tag(tag: Any, pattern: str = DEFAULT_TAG_PATTERN) -> str:
    """Return the tag if it is a valid, explicit version tag, else raise InvalidTagError."""
    text = "" if tag is None else str(tag).strip()
    if not text:
        raise InvalidTagError("No image tag given: pass one with -e filewcount_image_tag=2.0.")
    if text == "latest":
        raise InvalidTagError("Refusing the tag 'latest': pin an explicit version such as 2.0 or 1.0.")
    if not _OCI_TAG.match(text):
        raise InvalidTagError(
            f"'{text}' is not a valid container image tag (letters, digits, '_', '.', '-', "
            "at most 128 characters): pass a version such as 2.0."
        )
    if not re.match(pattern, text):
        raise InvalidTagError(
            f"Tag '{text}' does not match the expected version format {pattern}: pass a version such as 2.0 or 1.0."
        )
    return text


def _image_names(image: str) -> list[str]:
    """The spellings of one repository that container runtimes treat as equal (Docker Hub prefixes)."""
    bare = re.sub(r"^(docker\.io|index\.docker\.io|registry-1\.docker\.io)/", "", image)
    first = bare.split("/")[0]
    if "/" in bare and ("." in first or ":" in first or first == "localhost"):
        return [image]  # another registry: only the exact spelling
    return sorted({image, bare, f"docker.io/{bare}", f"index.docker.io/{bare}"}, key=len, reverse=True)


def _line_pattern(image: str) -> re.Pattern[str]:
    names = "|".join(re.escape(n) for n in _image_names(image))
    return re.compile(
        r"^(?P<lead>[ \t]*(?:-[ \t]+)?image:[ \t]*)(?P<q>[\"']?)(?P<name>" + names + r")"
        r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]*))?(?P<digest>@sha256:[0-9a-f]{64})?(?P=q)"
        r"(?P<tail>[ \t]*(?:#.*)?)$",
        re.MULTILINE,
    )


def current_images(text: str, image: str) -> list[str]:
    """Every reference to ``image`` on an ``image:`` line of the manifest text."""
    return [
        m.group("name") + (f":{m.group('tag')}" if m.group("tag") else "") + (m.group("digest") or "")
        for m in _line_pattern(image).finditer(text)
    ]


def replace_image_tag(text: str, image: str, tag: str) -> tuple[str, list[str]]:
    """Set the tag of every ``image:`` line that references ``image``; returns (new text, old references).

    Quotes, indentation and trailing comments are kept; a digest pin is dropped because it would contradict the
    new tag. Raises ImageNotFoundError when the manifest has no such line.
    """
    pattern = _line_pattern(image)
    old = current_images(text, image)
    if not old:
        raise ImageNotFoundError(
            f"No 'image: {image}:<tag>' line found in the manifest: check the path and the "
            "image name (variables upgrade_manifest and upgrade_image)."
        )

    def _sub(m: re.Match[str]) -> str:
        return f"{m.group('lead')}{m.group('q')}{m.group('name')}:{tag}{m.group('q')}{m.group('tail')}"

    new = pattern.sub(_sub, text)
    _check_yaml(new, image, tag)
    return new, old


def _check_yaml(text: str, image: str, tag: str) -> None:
    """Parse the edited manifest and confirm every container of ``image`` now carries ``tag``."""
    if yaml is None:  # pragma: no cover
        return
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise ImageNotFoundError(
            f"The manifest is not valid YAML after the edit ({exc}): fix the file by hand."
        ) from exc
    names = set(_image_names(image))
    found = []
    for doc in docs:
        found += [
            ref
            for ref in _walk_images(doc)
            if ref.rsplit(":", 1)[0].split("@")[0] in names or ref.split("@")[0] in names
        ]
    if not found or any(not ref.endswith(f":{tag}") for ref in found):
        raise ImageNotFoundError(
            f"After the edit the manifest references {', '.join(found) or 'no'} {image} "
            f"images instead of only :{tag}: the file layout is unusual, edit it by hand."
        )


def _walk_images(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                out.append(value)
            else:
                out += _walk_images(value)
    elif isinstance(node, list):
        for item in node:
            out += _walk_images(item)
    return out


# ------------------------------------------------------------------------------------------------------ git
def subprocess_runner(argv: Sequence[str], cwd: str) -> tuple[int, str, str]:
    """Default runner (tests, scripts); the module passes AnsibleModule.run_command instead."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, env=env, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@dataclass
class Git:
    repo: str
    run: Runner = subprocess_runner
    identity: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        argv = ["git"]
        for key, value in self.identity.items():
            argv += ["-c", f"{key}={value}"]
        argv += list(args)
        rc, out, err = self.run(argv, self.repo)
        if check and rc != 0:
            raise GitCommandError(_explain(args, (err or out).strip()))
        return rc, out, err


_HINTS = (
    (
        ("not a git repository",),
        "{action} needs a git checkout of this repository: run the upgrade from the repository root",
    ),
    (
        ("no such remote", "does not appear to be a git repository"),
        "{action} failed because the remote is missing: add it (local mode: the bootstrap adds remote 'local'; "
        "github mode: 'origin') or set upgrade_git_remote",
    ),
    (
        ("please tell me who you are", "unable to auto-detect email"),
        "git cannot commit without an identity: run git config user.name and git config user.email "
        "(or set upgrade_git_author_name and upgrade_git_author_email)",
    ),
    (
        ("rejected", "non-fast-forward", "fetch first"),
        "{action} was rejected because the remote has commits your checkout lacks: pull them "
        "(git pull --rebase) and run the upgrade again",
    ),
    (
        ("could not read username", "authentication failed", "403"),
        "{action} was refused for lack of credentials: configure a git credential helper or token for this "
        "remote and run the upgrade again",
    ),
    (
        ("could not resolve host", "connection refused", "failed to connect"),
        "{action} could not reach the remote: is the git server running (local mode: the kind cluster maps "
        "NodePort 30082 to localhost:8082)?",
    ),
)


def _explain(args: Sequence[str], err: str) -> str:
    action = "git " + " ".join(args[:2])
    low = err.lower()
    last = err.splitlines()[-1] if err else "no output"
    for needles, hint in _HINTS:
        if any(n in low for n in needles):
            return f"{hint.format(action=action)} (git said: {last})."
    return f"{action} failed: {last}."


def commit_identity(git: Git) -> dict[str, str]:
    """The identity (``-c`` settings) the upgrade commit uses: the user's own when git knows who commits.

    ``git var GIT_AUTHOR_IDENT`` / ``GIT_COMMITTER_IDENT`` fail exactly when ``git commit`` would ("Please tell
    me who you are"): no user.name/user.email in any config, no GIT_AUTHOR_*/GIT_COMMITTER_*/EMAIL variables, and
    no e-mail address git can guess, as on a fresh machine. Then each missing half comes from the caller's
    settings (``Git.identity``), git's config, or :data:`DEFAULT_IDENTITY`, in that order.
    """
    if all(git("var", var, check=False)[0] == 0 for var in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT")):
        return dict(git.identity)
    identity = {}
    for key, default in DEFAULT_IDENTITY.items():
        rc, out = git("config", "--get", key, check=False)[:2]
        identity[key] = git.identity.get(key) or (out.strip() if rc == 0 and out.strip() else default)
    return identity


def dirty_paths(git: Git) -> list[str]:
    """Tracked files with staged or unstaged changes (untracked files are not part of the commit)."""
    out = git("status", "--porcelain=v1", "--untracked-files=no")[1]
    return [line[3:] for line in out.splitlines() if line.strip()]


def current_branch(git: Git) -> str:
    rc, out = git("symbolic-ref", "--quiet", "--short", "HEAD", check=False)[:2]
    if rc != 0 or not out.strip():
        raise GitCommandError(
            "The checkout is on a detached HEAD: switch to the branch Flux syncs "
            "(git switch main) or set upgrade_git_branch."
        )
    return out.strip()


def fetch_remote_file(git: Git, remote: str, branch: str, path: str) -> tuple[str | None, str | None]:
    """Fetch ``branch`` from ``remote``; return (remote commit, the file's text there) or (None, None)."""
    out = git("ls-remote", "--heads", remote, f"refs/heads/{branch}")[1]
    if not out.strip():
        return None, None
    git("fetch", "--quiet", "--no-tags", remote, f"refs/heads/{branch}")
    sha = git("rev-parse", "FETCH_HEAD")[1].strip()
    rc, text = git("show", f"{sha}:{path}", check=False)[:2]
    return sha, (text if rc == 0 else None)


@dataclass
class UpgradeResult:
    changed: bool
    old_images: list[str]
    new_image: str
    committed: str | None = None
    pushed: bool = False
    remote_commit_before: str | None = None
    head: str | None = None
    branch: str = ""
    before: str = ""
    after: str = ""
    message: str = ""


def upgrade(
    git: Git,
    *,
    manifest: str,
    image: str,
    tag: str,
    remote: str,
    branch: str | None = None,
    check_mode: bool = False,
    tag_pattern: str = DEFAULT_TAG_PATTERN,
    commit_message: str | None = None,
) -> UpgradeResult:
    """Make ``remote``/``branch`` carry ``manifest`` with ``image:tag``; idempotent and check-mode aware."""
    tag = validate_tag(tag, tag_pattern)
    new_image = f"{image}:{tag}"
    dirty = dirty_paths(git)
    if dirty:
        raise DirtyTreeError(
            f"The working tree has uncommitted changes ({', '.join(dirty[:5])}"
            f"{', ...' if len(dirty) > 5 else ''}): commit or stash them first, so the upgrade "
            "commit contains only the image change."
        )
    branch = branch or current_branch(git)
    path = os.path.join(git.repo, manifest)
    try:
        with open(path, encoding="utf-8") as handle:
            before = handle.read()
    except OSError as exc:
        raise ImageNotFoundError(
            f"Cannot read the manifest {manifest} ({exc.strerror}): check upgrade_manifest."
        ) from exc
    after, old = replace_image_tag(before, image, tag)
    new_image = current_images(after, image)[0]  # spelled as in the manifest, which is what the cluster runs
    remote_sha, remote_text = fetch_remote_file(git, remote, branch, manifest)
    head = git("rev-parse", "HEAD")[1].strip()
    result = UpgradeResult(
        changed=False,
        old_images=old,
        new_image=new_image,
        remote_commit_before=remote_sha,
        head=head,
        branch=branch,
        before=before,
        after=after,
    )
    remote_at_tag = remote_text is not None and remote_text == replace_image_tag(remote_text, image, tag)[0]
    if after == before and remote_at_tag:
        result.message = f"{manifest} already uses {new_image} locally and on {remote}/{branch}: nothing to do."
        return result
    if remote_sha and remote_sha != head:
        rc = git("merge-base", "--is-ancestor", remote_sha, "HEAD", check=False)[0]
        if rc != 0:
            raise RemoteAheadError(
                f"{remote}/{branch} has commits your checkout lacks: run git pull --rebase "
                f"{remote} {branch} and run the upgrade again."
            )
    result.changed = True
    if after != before:
        result.message = f"Changed {', '.join(sorted(set(old)))} to {new_image} in {manifest}"
    else:
        result.message = f"{manifest} already uses {new_image} locally; pushing it to {remote}/{branch}"
    if check_mode:
        return result
    if after != before:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(after)
        try:
            git("add", "--", manifest)
            committer = replace(git, identity=commit_identity(git))
            committer(
                "commit",
                "--quiet",
                "-m",
                commit_message or f"Upgrade filewcount to {new_image}\n\nChanged by playbooks/upgrade.yml.",
                "--",
                manifest,
            )
        except GitCommandError:
            # The tree was clean before the edit: put the file back so a re-run is not refused as dirty.
            git("reset", "--quiet", "--", manifest, check=False)
            git("checkout", "--quiet", "HEAD", "--", manifest, check=False)
            raise
        result.committed = result.head = git("rev-parse", "HEAD")[1].strip()
    git("push", "--quiet", remote, f"HEAD:refs/heads/{branch}")
    result.pushed = True
    return result
