# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run ab inside the cluster as a Kubernetes Job: the Job's manifest, and its pod's log read back into the outcome
that :func:`ab_report.run_load_test` returns for a local run.

The container runs ``/bin/sh -c SCRIPT filewcount-load-test AB_ARGV...``: ab's argv travels as the script's
positional parameters (a list, never a shell string), ab writes its -e CSV and -g file into the working directory,
and the script then prints ab's stderr, the CSV and the -g file (gzip, base64: it has a line per request) after
ab's own report, each after a marker line, and last the exit code. So one log read returns everything.

Plain Python; errors are :class:`AbJobError` (or the :mod:`ab_report` errors) with one sentence each.
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Mapping

from ansible_collections.filewcount.gitops.plugins.module_utils.ab_report import (
    AbReportError,
    build_argv,
    outcome,
)

__all__ = [
    "CSV_NAME",
    "GNUPLOT_NAME",
    "JOB_LABEL",
    "AbJobError",
    "JobLog",
    "job_argv",
    "job_manifest",
    "job_outcome",
    "job_script",
    "split_log",
]

JOB_LABEL = "filewcount-load-test"
CSV_NAME = "percentiles.csv"
GNUPLOT_NAME = "gnuplot.tsv"
WORK_DIR = "/work"
_MARK = "===== filewcount-load-test:"
STDERR_MARK = f"{_MARK} ab stderr ====="
CSV_MARK = f"{_MARK} {CSV_NAME} ====="
GNUPLOT_MARK = f"{_MARK} {GNUPLOT_NAME} (gzip, base64) ====="
_END = re.compile(r"===== filewcount-load-test: end, ab exit code (\d+) =====$")


class AbJobError(AbReportError):
    """The Job's log is not what the load-test container prints."""


def job_script() -> str:
    """The container's shell script; ab's argv is its positional parameters ("$@")."""
    return "\n".join(
        [
            '"$@" 2>ab-stderr.txt; rc=$?',
            f"echo '{STDERR_MARK}'; cat ab-stderr.txt",
            f"echo '{CSV_MARK}'; cat {CSV_NAME} 2>/dev/null",
            f"echo '{GNUPLOT_MARK}'; gzip -c {GNUPLOT_NAME} 2>/dev/null | base64",
            'echo "===== filewcount-load-test: end, ab exit code $rc ====="',
            'exit "$rc"',
        ]
    )


def job_manifest(
    name: str,
    namespace: str,
    image: str,
    argv: list,
    *,
    deadline_s: int,
    ttl_s: int,
    resources: Mapping | None = None,
    run_as_user: int | None = None,
) -> dict:
    """The batch/v1 Job that runs ``argv`` (built by :func:`build_argv`) once, as a non-root user."""
    labels = {"app.kubernetes.io/name": JOB_LABEL, "app.kubernetes.io/part-of": "filewcount-gitops"}
    pod_security = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if run_as_user is not None:
        pod_security.update(runAsUser=run_as_user, runAsGroup=run_as_user)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_s,
            "ttlSecondsAfterFinished": ttl_s,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security,
                    "containers": [
                        {
                            "name": "ab",
                            "image": image,
                            "command": ["/bin/sh", "-c", job_script(), JOB_LABEL],
                            "args": list(argv),
                            "workingDir": WORK_DIR,
                            "resources": dict(resources or {}),
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "work", "mountPath": WORK_DIR}],
                        }
                    ],
                    "volumes": [{"name": "work", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    }


def job_argv(url: str, ab_path: str, argv_options: Mapping) -> list:
    """ab's argv in the container: the local mode's options, its -e and -g files in the working directory."""
    options = {key: value for key, value in argv_options.items() if key not in ("csv_file", "gnuplot_file")}
    return build_argv(url, ab_path=ab_path, csv_file=CSV_NAME, gnuplot_file=GNUPLOT_NAME, **options)


class JobLog:
    """A load-test container's log split into its parts (``rc`` is None when the end marker is missing)."""

    def __init__(self, stdout: str, stderr: str, csv_text: str | None, gnuplot_text: str | None, rc: int | None):
        self.stdout, self.stderr, self.csv_text, self.gnuplot_text, self.rc = (
            stdout,
            stderr,
            csv_text,
            gnuplot_text,
            rc,
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def split_log(log: str) -> JobLog:
    """Split the container's log at the marker lines (ab's report, its stderr, the CSV, the -g file, the exit code).

    Raises :class:`AbJobError` when the log lacks the markers (the script did not run to its end).
    """
    parts: dict[str, list] = {"stdout": []}
    current = "stdout"
    rc = None
    names = {STDERR_MARK: "stderr", CSV_MARK: "csv", GNUPLOT_MARK: "gnuplot"}
    for line in (log or "").splitlines():
        stripped = line.rstrip("\r")
        # ab leaves its last line open when it fails ("Benchmarking host (be patient)..."), so a marker can end a line.
        mark = next((m for m in names if stripped.endswith(m)), None)
        end = _END.search(stripped)
        if mark or end:
            prefix = stripped[: -len(mark)] if mark else stripped[: end.start()]
            if prefix:
                parts.setdefault(current, []).append(prefix)
            if mark:
                current = names[mark]
                parts[current] = []
            else:
                rc = int(end.group(1))
                current = "after"
            continue
        parts.setdefault(current, []).append(stripped)
    if rc is None or "stderr" not in parts:
        raise AbJobError(
            f"The load-test pod's log ends before the script's end marker (last line: {_last_line(log or '')!r}); "
            "check that the image runs /bin/sh and ab."
        )
    gnuplot = None
    encoded = "".join(parts.get("gnuplot") or []).strip()
    if encoded:
        try:
            gnuplot = gzip.decompress(base64.b64decode(encoded, validate=True)).decode("utf-8", errors="replace")
        except (ValueError, OSError, EOFError) as error:
            raise AbJobError(f"The -g data in the load-test pod's log is not gzip in base64 ({error}).") from None
    csv_lines = parts.get("csv") or []
    return JobLog(
        stdout="\n".join(parts["stdout"]) + "\n",
        stderr="\n".join(parts["stderr"]) + ("\n" if parts["stderr"] else ""),
        csv_text="\n".join(csv_lines) + "\n" if csv_lines else None,
        gnuplot_text=gnuplot,
        rc=rc,
    )


def job_outcome(log: str, argv: list, url: str, thresholds: Mapping | None = None) -> dict:
    """The outcome of the Job's ab run (as ``run_load_test`` returns it) from its pod's log.

    Raises :class:`ab_report.AbRunError` when ab failed in the container, :class:`AbJobError` when the log is not
    the script's, other :class:`AbReportError` when ab's output cannot be parsed.
    """
    parts = split_log(log)
    return outcome(
        argv,
        parts.rc,
        parts.stdout,
        parts.stderr,
        url,
        csv_text=parts.csv_text,
        gnuplot_source=parts.gnuplot_text,
        thresholds=thresholds,
    )
