# Copyright: filewcount.gitops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse ApacheBench (ab 2.3) output, evaluate thresholds and build ab's argv.

Plain Python without Ansible imports, so the filter, the module and the tests share it.

- :func:`parse_stdout` turns ab's report (stdout) into a dict with a fixed set of keys.
- :func:`parse_csv` reads the ``-e`` file (percent served -> milliseconds, 0..100).
- :func:`parse_gnuplot` reads the ``-g`` file (one row per request) and derives requests and latency per second.
- :func:`evaluate_thresholds` compares a parsed report with limits and returns the broken ones.
- :func:`build_argv` builds a safe argv list for ab; :func:`run_failure` explains a failed ab run.
- :func:`run_load_test` runs ab once through a given runner and returns everything above.

Every problem is raised as :class:`AbReportError` (or a subclass) with one sentence naming the problem and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

__all__ = [
    "PERCENTILES",
    "AbArgumentError",
    "AbFormatError",
    "AbNoStatisticsError",
    "AbReportError",
    "AbRunError",
    "build_argv",
    "evaluate_thresholds",
    "outcome",
    "parse_csv",
    "parse_gnuplot",
    "parse_stdout",
    "run_failure",
    "run_load_test",
]

PERCENTILES = ("50", "66", "75", "80", "90", "95", "98", "99", "100")
CONNECTION_ROWS = ("connect", "processing", "waiting", "total")
THRESHOLD_NAMES = ("max_failed_requests", "max_non_2xx", "max_p95_ms", "max_p99_ms", "min_requests_per_second")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# ab's -f values (ab 2.3 as Apache httpd 2.4 ships it, built against OpenSSL 1.1.1 or later; SSL2/SSL3 are gone).
TLS_PROTOCOLS = ("TLS1", "TLS1.1", "TLS1.2", "TLS1.3", "ALL")
# ab refuses a concurrency above MAX_CONCURRENCY (20000) and, with -t alone, stops after MAX_REQUESTS (50000).
MAX_CONCURRENCY = 20000
# The options ab_load_test (ab on this host) and ab_load_job (ab in a Job) share: the load and the thresholds.
LOAD_ARGUMENT_SPEC = {
    "requests": {"type": "int"},
    "concurrency": {"type": "int", "default": 1},
    "time_limit": {"type": "int"},
    "keep_alive": {"type": "bool", "default": False},
    "socket_timeout": {"type": "int"},
    "headers": {"type": "dict", "default": {}},
    "variable_length": {"type": "bool", "default": False},
    "tls_protocol": {"type": "str", "choices": ["TLS1", "TLS1.1", "TLS1.2", "TLS1.3", "ALL"]},
    "thresholds": {
        "type": "dict",
        "default": {},
        "options": {
            "max_failed_requests": {"type": "int"},
            "max_non_2xx": {"type": "int"},
            "max_p95_ms": {"type": "float"},
            "max_p99_ms": {"type": "float"},
            "min_requests_per_second": {"type": "float"},
        },
    },
}
# The LOAD_ARGUMENT_SPEC options that become ab flags (build_argv's keyword arguments); thresholds do not.
LOAD_ARGV_OPTIONS = tuple(name for name in LOAD_ARGUMENT_SPEC if name != "thresholds")
# A -g file whose requests start further apart than a day is not one ab run (and would make a huge timeline).
MAX_GNUPLOT_SPAN_S = 24 * 3600


class AbReportError(Exception):
    """Base class: ab's output could not be parsed, an argument was wrong, or ab failed."""


class AbFormatError(AbReportError):
    """The text is not what ab prints (garbled or truncated numbers, wrong header)."""


class AbNoStatisticsError(AbReportError):
    """ab printed no statistics (it failed or the text was cut before the summary)."""

    def __init__(self, message: str, completed: int | None = None):
        super().__init__(message)
        self.completed = completed


class AbArgumentError(AbReportError):
    """An option for ab is invalid (caught before ab is run)."""


class AbRunError(AbReportError):
    """ab exited non-zero; ``reason`` is ab's own message from stderr."""

    def __init__(self, message: str, rc: int, reason: str | None, completed: int | None):
        super().__init__(message)
        self.rc = rc
        self.reason = reason
        self.completed = completed


# --------------------------------------------------------------------------------------------------------------------
# stdout
# --------------------------------------------------------------------------------------------------------------------

_NUM = r"(\d+(?:\.\d+)?)"
_KEY_VALUE = re.compile(r"^([A-Za-z][A-Za-z0-9/ +\-]*?):\s*(.*?)\s*$")
_BREAKDOWN = re.compile(r"^\(Connect:\s*(\d+),\s*Receive:\s*(\d+),\s*Length:\s*(\d+),\s*Exceptions:\s*(\d+)\)$")
_PERCENT_ROW = re.compile(r"^(\d{1,3})%\s+(\S+)(?:\s+\(longest request\))?$")
_TOTAL_COMPLETED = re.compile(r"Total of (\d+) requests completed")
_NUMBER = re.compile(r"^" + _NUM + r"$")

# "Key:" -> (path in the result, parser). The parser receives the text after the colon.
_INT_BYTES = re.compile(r"^(\d+)(?: bytes)?$")


def _number(text: str, line_no: int, what: str) -> int | float:
    match = _NUMBER.match(text)
    if match is None:
        raise AbFormatError(
            f"Line {line_no} of the ab output has {text!r} where {what} should be a number; "
            "pass the unmodified stdout of ab 2.3."
        )
    value = match.group(1)
    return float(value) if "." in value else int(value)


def _first_token_number(text: str, line_no: int, what: str) -> int | float:
    return _number(text.split(" ", 1)[0] if text else text, line_no, what)


def _int(text: str, line_no: int, what: str) -> int:
    value = _first_token_number(text, line_no, what)
    if isinstance(value, float):
        raise AbFormatError(
            f"Line {line_no} of the ab output has {text!r} where {what} should be a whole number; "
            "pass the unmodified stdout of ab 2.3."
        )
    return value


def _empty_report() -> dict:
    return {
        "server": {"software": None, "hostname": None, "port": None},
        "document": {"path": None, "length_bytes": None},
        "concurrency": None,
        "time_taken_s": None,
        "complete_requests": None,
        "failed_requests": None,
        "failed_breakdown": {"connect": None, "receive": None, "length": None, "exceptions": None},
        "write_errors": None,
        "non_2xx_responses": None,
        "keep_alive_requests": None,
        "total_body_sent_bytes": None,
        "total_transferred_bytes": None,
        "html_transferred_bytes": None,
        "requests_per_second": None,
        "time_per_request_ms": None,
        "time_per_request_all_ms": None,
        "transfer_rate_kbytes_s": None,
        "connection_times_ms": None,
        "percentiles_ms": None,
    }


def _text(value, what: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise AbFormatError(
            f"The {what} must be text, not {type(value).__name__}; pass the file's content as a string."
        )
    return value


# "Key" of a summary line -> (where it goes in the report, what it is called in error messages, whole number?)
_SUMMARY_KEYS = {
    "Server Port": (("server", "port"), "the server port", True),
    "Concurrency Level": (("concurrency",), "the concurrency", True),
    "Time taken for tests": (("time_taken_s",), "the time taken", False),
    "Complete requests": (("complete_requests",), "the complete requests", True),
    "Failed requests": (("failed_requests",), "the failed requests", True),
    "Write errors": (("write_errors",), "the write errors", True),
    "Non-2xx responses": (("non_2xx_responses",), "the non-2xx responses", True),
    "Keep-Alive requests": (("keep_alive_requests",), "the keep-alive requests", True),
    "Total body sent": (("total_body_sent_bytes",), "the body bytes sent", True),
    "Total transferred": (("total_transferred_bytes",), "the bytes transferred", True),
    "HTML transferred": (("html_transferred_bytes",), "the HTML bytes transferred", True),
    "Requests per second": (("requests_per_second",), "the requests per second", False),
    "Transfer rate": (("transfer_rate_kbytes_s",), "the transfer rate", False),
}
_TEXT_KEYS = {
    "Server Software": ("server", "software"),
    "Server Hostname": ("server", "hostname"),
    "Document Path": ("document", "path"),
}


def _store(report: dict, path: tuple, value) -> None:
    target = report
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _summary_line(report: dict, key: str, value: str, line_no: int) -> None:
    """Store one ``Key: value`` summary line; unknown keys (newer ab builds, TLS lines) are ignored."""
    if key in _TEXT_KEYS:
        _store(report, _TEXT_KEYS[key], value or None)
    elif key in _SUMMARY_KEYS:
        path, what, whole = _SUMMARY_KEYS[key]
        _store(report, path, _int(value, line_no, what) if whole else _first_token_number(value, line_no, what))
    elif key == "Document Length":
        # "Variable" with -l: there is no single length.
        report["document"]["length_bytes"] = None if value == "Variable" else _int(value, line_no, "the length")
    elif key == "Time per request":
        # Printed twice: "(mean)" first, then "(mean, across all concurrent requests)".
        field = "time_per_request_all_ms" if "across all" in value else "time_per_request_ms"
        report[field] = _first_token_number(value, line_no, "the time per request")


def _connection_row(line: str, line_no: int, with_sd: bool) -> tuple[str, dict] | None:
    name, _colon, rest = line.partition(":")
    name = name.strip().lower()
    if name not in CONNECTION_ROWS:
        return None
    fields = rest.split()
    expected = 5 if with_sd else 3
    if len(fields) != expected:
        raise AbFormatError(
            f"Line {line_no} of the ab output has {len(fields)} connection-time values where ab prints {expected}; "
            "pass the unmodified stdout of ab 2.3."
        )
    values = [_number(field, line_no, "a connection time") for field in fields]
    if with_sd:
        row = dict(zip(("min", "mean", "sd", "median", "max"), values, strict=True))
    else:
        row = {"min": values[0], "mean": values[1], "sd": None, "median": None, "max": values[2]}
    return name, row


class _Sections:
    """Collects the connection-time table and the percentile table while the lines are read."""

    def __init__(self) -> None:
        self.section = "summary"
        self.with_sd = True
        self.connection: dict = {}
        self.percentiles: dict = {}

    def feed(self, line: str, line_no: int) -> bool:
        """Consume ``line`` if it belongs to a table or starts one; return False for summary lines."""
        if line.startswith("Connection Times (ms)"):
            self.section = "connection"
        elif line.startswith("Percentage of the requests served"):
            self.section = "percentiles"
        elif self.section == "connection":
            if line.startswith("min"):
                self.with_sd = "sd" in line
            else:
                row = _connection_row(line, line_no, self.with_sd)
                # WARNING lines about unreliable medians and any other text are not data.
                if row is not None:
                    self.connection[row[0]] = row[1]
        elif self.section == "percentiles":
            match = _PERCENT_ROW.match(line)
            if match and match.group(1) in PERCENTILES:
                self.percentiles[match.group(1)] = _number(match.group(2), line_no, "a percentile time")
        else:
            return False
        return True


def _no_statistics(completed_total: int | None) -> AbNoStatisticsError:
    if completed_total is not None:
        message = (
            f"ab printed no statistics, only that {completed_total} requests completed before it stopped; "
            "read ab's reason on stderr and fix the target or the options."
        )
    else:
        message = (
            "The text holds no ab statistics (no 'Complete requests:' line); "
            "pass the complete stdout of a finished ab run."
        )
    return AbNoStatisticsError(message, completed_total)


def _complete(report: dict, sections: _Sections) -> dict:
    if report["failed_requests"] is None:
        raise AbFormatError(
            "The ab output has 'Complete requests' but no 'Failed requests' line, so it was cut or edited; "
            "pass the complete stdout of ab."
        )
    if report["failed_breakdown"]["connect"] is None:
        if report["failed_requests"]:
            raise AbFormatError(
                f"The ab output reports {report['failed_requests']} failed requests but no breakdown line "
                "'(Connect: ..., Receive: ..., Length: ..., Exceptions: ...)'; pass the complete stdout of ab."
            )
        report["failed_breakdown"] = {"connect": 0, "receive": 0, "length": 0, "exceptions": 0}
    for key in ("write_errors", "non_2xx_responses", "total_body_sent_bytes"):
        if report[key] is None:
            report[key] = 0
    if sections.connection:
        report["connection_times_ms"] = {name: sections.connection.get(name) for name in CONNECTION_ROWS}
    if sections.percentiles:
        report["percentiles_ms"] = {p: sections.percentiles.get(p) for p in PERCENTILES}
    return report


def parse_stdout(text) -> dict:
    """Parse the stdout of ``ab`` (ApacheBench 2.3) into a dict with a fixed set of keys.

    Values ab did not print are ``None``; the lines ab prints only when they apply (failure breakdown,
    write errors, non-2xx responses, body sent) count as 0 when the summary is there, and
    ``keep_alive_requests`` stays ``None`` without ``-k``.
    Raises :class:`AbNoStatisticsError` when the text holds no statistics and :class:`AbFormatError`
    when a value is not a number.
    """
    text = _text(text, "ab output")
    report = _empty_report()
    sections = _Sections()
    completed_total = None
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        total_match = _TOTAL_COMPLETED.search(line)
        if total_match:
            completed_total = int(total_match.group(1))
        elif sections.feed(line, line_no):
            continue
        elif breakdown := _BREAKDOWN.match(line):
            values = (int(group) for group in breakdown.groups())
            report["failed_breakdown"] = dict(zip(("connect", "receive", "length", "exceptions"), values, strict=True))
        elif match := _KEY_VALUE.match(line):
            _summary_line(report, match.group(1), match.group(2), line_no)
    if report["complete_requests"] is None:
        raise _no_statistics(completed_total)
    return _complete(report, sections)


# --------------------------------------------------------------------------------------------------------------------
# -e CSV and -g TSV
# --------------------------------------------------------------------------------------------------------------------

_CSV_HEADER = "Percentage served,Time in ms"
_GNUPLOT_HEADER = "starttime\tseconds\tctime\tdtime\tttime\twait"


def parse_csv(text) -> dict:
    """Parse ab's ``-e`` CSV file into ``{"0": ms, ..., "100": ms}`` (percent of requests served -> ms)."""
    text = _text(text, "ab -e CSV")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != _CSV_HEADER:
        raise AbFormatError(
            f"The CSV does not start with ab's header {_CSV_HEADER!r}; pass the file written by 'ab -e FILE'."
        )
    result: dict = {}
    for line_no, line in enumerate(lines[1:], start=2):
        percent, sep, millis = line.partition(",")
        if not sep or not percent.isdigit() or int(percent) > 100 or _NUMBER.match(millis) is None:
            raise AbFormatError(
                f"Row {line_no} of the ab CSV is {line!r}, not 'PERCENT,MILLISECONDS'; "
                "pass the unmodified file written by 'ab -e FILE'."
            )
        result[str(int(percent))] = float(millis)
    if not result:
        raise AbFormatError("The ab CSV has a header but no rows; pass the file of an ab run that completed requests.")
    return result


def _nearest_rank(sorted_values: list, percent: int):
    if not sorted_values:
        return None
    index = max(0, math.ceil(percent / 100 * len(sorted_values)) - 1)
    return sorted_values[index]


def _latency_summary(values: list) -> dict:
    if not values:
        return {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    values.sort()
    return {
        "mean": round(sum(values) / len(values), 3),
        "p50": _nearest_rank(values, 50),
        "p95": _nearest_rank(values, 95),
        "p99": _nearest_rank(values, 99),
        "max": values[-1],
    }


def _gnuplot_lines(source) -> Iterable[str]:
    if isinstance(source, (str, bytes)):
        return _text(source, "ab -g file").splitlines()
    return source


def parse_gnuplot(source) -> dict:
    """Parse ab's ``-g`` TSV (one row per request) and derive requests and latency per second.

    ``source`` is the file's text or an iterable of its lines (an open file streams a large file).
    Requests are counted in the second they started. Returns ``requests``, ``start_epoch_s``,
    ``duration_s``, ``ttime_ms`` (mean/p50/p95/p99/max over the run) and ``per_second``: one entry per
    second from the first to the last, each ``{offset_s, epoch_s, requests, ttime_ms}``; seconds in which
    no request started appear with 0 requests and null latencies.
    """
    lines = iter(_gnuplot_lines(source))
    header = next(lines, None)
    if header is None or _text(header, "ab -g file").rstrip("\r\n") != _GNUPLOT_HEADER:
        raise AbFormatError(
            "The gnuplot file does not start with ab's header 'starttime seconds ctime dtime ttime wait'; "
            "pass the file written by 'ab -g FILE'."
        )
    per_second: dict[int, list] = {}
    all_times: list = []
    count = 0
    for line_no, raw in enumerate(lines, start=2):
        line = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 6:
            if not line.strip():
                continue
            raise AbFormatError(
                f"Row {line_no} of the ab gnuplot file has {len(fields)} tab-separated fields instead of 6; "
                "pass the unmodified file written by 'ab -g FILE'."
            )
        try:
            second = int(fields[1])
            ttime = int(fields[4])
            int(fields[2])
            int(fields[3])
            int(fields[5])
        except ValueError:
            raise AbFormatError(
                f"Row {line_no} of the ab gnuplot file has a value that is not a whole number; "
                "pass the unmodified file written by 'ab -g FILE'."
            ) from None
        if second < 0 or ttime < 0:
            raise AbFormatError(
                f"Row {line_no} of the ab gnuplot file has a negative time; "
                "pass the unmodified file written by 'ab -g FILE'."
            )
        bucket = per_second.get(second)
        if bucket is None:
            bucket = per_second[second] = []
        bucket.append(ttime)
        count += 1
    if not count:
        return {
            "requests": 0,
            "start_epoch_s": None,
            "duration_s": 0,
            "ttime_ms": _latency_summary([]),
            "per_second": [],
        }
    first, last = min(per_second), max(per_second)
    if last - first > MAX_GNUPLOT_SPAN_S:
        raise AbFormatError(
            f"The ab gnuplot file spans {last - first} seconds between its first and last request, more than "
            f"{MAX_GNUPLOT_SPAN_S}; pass the unmodified file of one ab run."
        )
    timeline = []
    for second in range(first, last + 1):
        values = per_second.get(second, [])
        all_times.extend(values)
        timeline.append(
            {
                "offset_s": second - first,
                "epoch_s": second,
                "requests": len(values),
                "ttime_ms": _latency_summary(values),
            }
        )
    return {
        "requests": count,
        "start_epoch_s": first,
        "duration_s": last - first + 1,
        "ttime_ms": _latency_summary(all_times),
        "per_second": timeline,
    }


# --------------------------------------------------------------------------------------------------------------------
# thresholds
# --------------------------------------------------------------------------------------------------------------------


def _percentile(report: Mapping, key: str):
    percentiles = report.get("percentiles_ms") or {}
    return percentiles.get(key)


def evaluate_thresholds(report: Mapping, thresholds: Mapping | None) -> list:
    """Return the broken thresholds as ``[{name, limit, actual, message}]`` (empty when all hold).

    ``thresholds`` maps any of ``max_failed_requests``, ``max_non_2xx``, ``max_p95_ms``, ``max_p99_ms``,
    ``min_requests_per_second`` to a number; ``None`` values are not checked.
    """
    thresholds = dict(thresholds or {})
    unknown = sorted(set(thresholds) - set(THRESHOLD_NAMES))
    if unknown:
        raise AbArgumentError(f"Unknown threshold {', '.join(unknown)}; use one of {', '.join(THRESHOLD_NAMES)}.")
    broken = []

    def _check_max(name: str, actual, what: str, unit: str) -> None:
        limit = thresholds.get(name)
        if limit is None:
            return
        if actual is None:
            broken.append(
                {
                    "name": name,
                    "limit": limit,
                    "actual": None,
                    "message": f"ab printed no {what}, so {name} cannot be checked; send more than one request.",
                }
            )
        elif actual > limit:
            broken.append(
                {
                    "name": name,
                    "limit": limit,
                    "actual": actual,
                    "message": f"The {what} was {actual}{unit}, above {name} {limit}{unit}; "
                    f"fix the service or raise {name}.",
                }
            )

    _check_max("max_failed_requests", report.get("failed_requests"), "number of failed requests", "")
    _check_max("max_non_2xx", report.get("non_2xx_responses"), "number of non-2xx responses", "")
    _check_max("max_p95_ms", _percentile(report, "95"), "95th percentile latency", " ms")
    _check_max("max_p99_ms", _percentile(report, "99"), "99th percentile latency", " ms")
    limit = thresholds.get("min_requests_per_second")
    if limit is not None:
        actual = report.get("requests_per_second")
        if actual is None or actual < limit:
            shown = "not measured" if actual is None else f"{actual}"
            broken.append(
                {
                    "name": "min_requests_per_second",
                    "limit": limit,
                    "actual": actual,
                    "message": (
                        f"The throughput was {shown} requests per second, below min_requests_per_second {limit}; "
                        "fix the service or lower min_requests_per_second."
                    ),
                }
            )
    return broken


# --------------------------------------------------------------------------------------------------------------------
# argv and failures
# --------------------------------------------------------------------------------------------------------------------

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _positive(value, name: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AbArgumentError(f"{name} must be a whole number of at least 1, not {value!r}; fix {name}.")


def _normalise_url(url) -> str:
    if not isinstance(url, str) or not url or any(ch.isspace() for ch in url):
        raise AbArgumentError(f"url {url!r} is not a URL without spaces; pass e.g. http://localhost:8080/.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AbArgumentError(
            f"url {url!r} is not an http:// or https:// URL with a host; pass e.g. http://localhost:8080/."
        )
    if parts.fragment:
        raise AbArgumentError(f"url {url!r} has a #fragment, which ab would send to the server; remove it.")
    # ab rejects a URL without a path ("invalid URL"), so give it the root path.
    if not parts.path:
        url = f"{parts.scheme}://{parts.netloc}/" + (f"?{parts.query}" if parts.query else "")
    return url


def _check_counts(requests, concurrency, time_limit, socket_timeout) -> None:
    _positive(requests, "requests")
    _positive(concurrency, "concurrency", allow_none=False)
    _positive(time_limit, "time_limit")
    _positive(socket_timeout, "socket_timeout")
    if requests is None and time_limit is None:
        raise AbArgumentError("Neither requests nor time_limit is set, so ab would send one request; set one of them.")
    if concurrency > MAX_CONCURRENCY:
        raise AbArgumentError(f"concurrency {concurrency} is above ab's limit of {MAX_CONCURRENCY}; lower concurrency.")
    if requests is not None and concurrency > requests:
        raise AbArgumentError(
            f"concurrency {concurrency} is greater than requests {requests}, which ab refuses; "
            "lower concurrency or raise requests."
        )


def _header_options(headers: Mapping | None) -> list:
    options = []
    for name, value in (headers or {}).items():
        text_name, text_value = str(name), str(value)
        if not _HEADER_NAME.match(text_name) or "\r" in text_value or "\n" in text_value:
            raise AbArgumentError(
                f"Header {text_name!r} has a name that is not an HTTP token or a value with a line break; fix headers."
            )
        options += ["-H", f"{text_name}: {text_value}"]
    return options


def _method_options(method: str | None, body_file: str | None, content_type: str | None) -> list:
    method = (method or "GET").upper()
    if method not in METHODS:
        raise AbArgumentError(f"method {method!r} is not supported; use one of {', '.join(METHODS)}.")
    if body_file and method not in ("POST", "PUT", "PATCH"):
        raise AbArgumentError(f"body_file is set but method {method} sends no body; use POST, PUT or PATCH.")
    if method in ("POST", "PUT") and not body_file:
        raise AbArgumentError(f"method {method} needs body_file (ab sends its content); set body_file.")
    if content_type and not body_file:
        raise AbArgumentError("content_type is set but no body_file is sent; set body_file or drop content_type.")
    options = {"GET": [], "HEAD": ["-i"], "POST": ["-p", body_file], "PUT": ["-u", body_file]}.get(method)
    if options is None:
        # PATCH, DELETE, OPTIONS: ab's -m sets the method; -p before it supplies a body.
        options = (["-p", body_file] if body_file else []) + ["-m", method]
    if body_file:
        options += ["-T", content_type or "application/octet-stream"]
    return options


def build_argv(
    url: str,
    *,
    ab_path: str = "ab",
    requests: int | None = None,
    concurrency: int = 1,
    time_limit: int | None = None,
    keep_alive: bool = False,
    socket_timeout: int | None = None,
    headers: Mapping | None = None,
    method: str = "GET",
    body_file: str | None = None,
    content_type: str | None = None,
    variable_length: bool = False,
    continue_on_receive_errors: bool = False,
    csv_file: str | None = None,
    gnuplot_file: str | None = None,
    tls_protocol: str | None = None,
) -> list:
    """Build ab's argv as a list (never a shell string); raise :class:`AbArgumentError` on invalid options."""
    url = _normalise_url(url)
    _check_counts(requests, concurrency, time_limit, socket_timeout)
    if tls_protocol and tls_protocol not in TLS_PROTOCOLS:
        raise AbArgumentError(
            f"tls_protocol {tls_protocol!r} is not one ab knows; use one of {', '.join(TLS_PROTOCOLS)}."
        )
    if tls_protocol and urlsplit(url).scheme != "https":
        raise AbArgumentError(f"tls_protocol is set but url {url} is not https://; use an https:// URL or unset it.")
    argv = [ab_path or "ab"]
    # -t implies -n 50000 in ab, so -t goes first and an explicit -n after it still bounds the run.
    if time_limit is not None:
        argv += ["-t", str(time_limit)]
    if requests is not None:
        argv += ["-n", str(requests)]
    argv += ["-c", str(concurrency)]
    if socket_timeout is not None:
        argv += ["-s", str(socket_timeout)]
    flags = (("-k", keep_alive), ("-l", variable_length), ("-r", continue_on_receive_errors))
    argv += [flag for flag, wanted in flags if wanted]
    if tls_protocol:
        argv += ["-f", tls_protocol]
    argv += _header_options(headers)
    argv += _method_options(method, body_file, content_type)
    if csv_file:
        argv += ["-e", csv_file]
    if gnuplot_file:
        argv += ["-g", gnuplot_file]
    argv.append(url)
    return argv


_PROGRESS = re.compile(r"^(Completed|Finished) \d+ requests$")
_ERRNO_HINTS = {
    111: "nothing accepts connections at {url}; start the service or fix url",
    104: "the server at {url} reset a connection; check the service's logs, or set continue_on_receive_errors "
    "to count resets as failed requests",
    110: "connecting to {url} timed out; check that the host is reachable",
    113: "there is no route to {url}; check the host and network",
    119: "{url} did not answer within the socket timeout; raise socket_timeout or check the service",
    70007: "{url} did not answer within the socket timeout; raise socket_timeout or check the service",
}


def _reason(stderr: str) -> str | None:
    lines = [line.strip() for line in (stderr or "").splitlines()]
    lines = [line for line in lines if line and not _PROGRESS.match(line)]
    return lines[-1] if lines else None


def run_failure(rc: int, stdout: str, stderr: str, url: str) -> AbRunError:
    """Explain a non-zero ab exit as one :class:`AbRunError` (ab's reason, requests done, what to do)."""
    reason = _reason(stderr)
    total = _TOTAL_COMPLETED.search(stdout or "")
    completed = int(total.group(1)) if total else None
    errno_match = re.search(r"\((\d+)\)\s*$", reason or "")
    code = int(errno_match.group(1)) if errno_match else rc
    hint = _ERRNO_HINTS.get(code) or _ERRNO_HINTS.get(rc)
    if hint is None:
        if reason and (reason.startswith("Usage:") or "invalid" in reason.lower()):
            hint = "ab rejected its arguments; check url and the options"
        else:
            hint = "read ab's message and fix the target or the options"
    done = f" after {completed} completed requests" if completed is not None else ""
    said = f" ({reason})" if reason else ""
    message = f"ab exited with code {rc}{done}{said}: {hint.format(url=url)}."
    return AbRunError(message, rc, reason, completed)


# --------------------------------------------------------------------------------------------------------------------
# one load test: run ab, parse everything, evaluate thresholds
# --------------------------------------------------------------------------------------------------------------------


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as error:
        raise AbReportError(
            f"ab finished but its {what} file {path} cannot be read ({error.strerror}); check the path is writable."
        ) from None


def run_load_test(run_command, url: str, argv_options: Mapping, thresholds: Mapping | None = None) -> dict:
    """Run ab once through ``run_command(argv) -> (rc, stdout, stderr)`` and return the whole outcome.

    ``argv_options`` are the keyword arguments of :func:`build_argv` (without ``url``). Returns ``cmd``,
    ``rc``, ``stdout``, ``stderr``, ``report`` (:func:`parse_stdout`), ``percentages_ms`` (from the -e file
    or None), ``timeline`` (from the -g file or None), ``broken_thresholds`` and ``passed``.
    Raises :class:`AbRunError` when ab exits non-zero, other :class:`AbReportError` on bad options or output.
    """
    argv = build_argv(url, **argv_options)
    # Reject unknown thresholds before any load is sent.
    evaluate_thresholds(_empty_report(), {key: None for key in (thresholds or {})})
    rc, stdout, stderr = run_command(argv)
    if rc != 0:
        raise run_failure(rc, stdout, stderr, url)
    csv_file, gnuplot_file = argv_options.get("csv_file"), argv_options.get("gnuplot_file")
    csv_text = _read_text(csv_file, "-e CSV") if csv_file else None
    if not gnuplot_file:
        return outcome(argv, rc, stdout, stderr, url, csv_text=csv_text, thresholds=thresholds)
    try:
        with open(gnuplot_file, encoding="utf-8", errors="replace") as handle:
            return outcome(
                argv, rc, stdout, stderr, url, csv_text=csv_text, gnuplot_source=handle, thresholds=thresholds
            )
    except OSError as error:
        raise AbReportError(
            f"ab finished but its -g file {gnuplot_file} cannot be read ({error.strerror}); check the path is writable."
        ) from None


def outcome(
    argv: list,
    rc: int,
    stdout: str,
    stderr: str,
    url: str,
    *,
    csv_text: str | None = None,
    gnuplot_source=None,
    thresholds: Mapping | None = None,
) -> dict:
    """The whole outcome of one ab run from its output, wherever it ran (here, or in a Job's container).

    ``csv_text`` is the -e file's text and ``gnuplot_source`` the -g file (text or lines), each None when ab was
    not asked for it. Raises :class:`AbRunError` when ``rc`` is not 0, other :class:`AbReportError` on bad output.
    """
    if rc != 0:
        raise run_failure(rc, stdout, stderr, url)
    report = parse_stdout(stdout)
    percentages = parse_csv(csv_text) if csv_text is not None else None
    timeline = parse_gnuplot(gnuplot_source) if gnuplot_source is not None else None
    broken = evaluate_thresholds(report, thresholds)
    return {
        "cmd": argv,
        "rc": rc,
        "stdout": stdout,
        "stderr": stderr,
        "report": report,
        "percentages_ms": percentages,
        "timeline": timeline,
        "broken_thresholds": broken,
        "passed": not broken,
    }
