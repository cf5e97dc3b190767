"""Summarise py-spy's collapsed stacks ("frame;frame;frame count" per line,
`py-spy record --format raw`): where the sampled CPU goes, by library and by
function."""

from __future__ import annotations

import re
from collections import Counter

FRAME = re.compile(r"^(?P<name>.*?) \((?P<path>[^():]+)(?::(?P<line>\d+))?\)$")

# The first match on a frame's file path names its area.
AREAS = (
    ("boto3/botocore: request building, signing, parsing", ("/botocore/", "/boto3/", "/s3transfer/")),
    ("urllib3/http.client: HTTP to SES", ("/urllib3/", "/http/client.py", "/ssl.py", "/socket.py")),
    ("email package: building the MIME message", ("/email/",)),
    ("psycopg / psycopg_pool: the database", ("/psycopg/", "/psycopg_pool/", "/psycopg_binary/")),
    ("logging", ("/logging/",)),
    ("json", ("/json/",)),
    ("itsdangerous / hmac: unsubscribe tokens", ("/itsdangerous/", "/hmac.py", "/hashlib.py")),
    ("prometheus_client: metrics", ("/prometheus_client/",)),
    ("threading / queue / concurrent", ("/threading.py", "/queue.py", "/concurrent/")),
    ("gunicorn / werkzeug / flask", ("/gunicorn/", "/werkzeug/", "/flask/")),
    ("amazonsender (own code)", ("/amazonsender/",)),
)


def parse_frame(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match["name"], match["path"]


def area_of(path: str) -> str:
    path = "/" + path.lstrip("/")
    for area, needles in AREAS:
        if any(needle in path for needle in needles):
            return area
    return "other (stdlib, interpreter)"


def summarize(collapsed: str, top: int = 15) -> str:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [parse_frame(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        seen = set()
        for name, path in frames:
            label = f"{name} ({short(path)})"
            if label not in seen:
                inclusive[label] += count
                seen.add(label)
        name, path = frames[-1]
        leaf[f"{name} ({short(path)})"] += count
        # The area of the innermost frame that belongs to a known library:
        # a leaf in the stdlib (say, `re`) called by botocore counts as botocore.
        area = "other (stdlib, interpreter)"
        for _, frame_path in reversed(frames):
            found = area_of(frame_path)
            if found != "other (stdlib, interpreter)":
                area = found
                break
        areas[area] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples of the thread holding the GIL (py-spy --gil: where the CPU goes)", "", "by area (innermost library frame):"]
    lines += [f"  {n / total:6.1%}  {area}" for area, n in areas.most_common()]
    lines += ["", f"top {top} functions, inclusive:"]
    lines += [f"  {n / total:6.1%}  {label}" for label, n in inclusive.most_common(top)]
    lines += ["", f"top {top} functions, self:"]
    lines += [f"  {n / total:6.1%}  {label}" for label, n in leaf.most_common(top)]
    return "\n".join(lines)


def short(path: str) -> str:
    """The path from the package on: site-packages/, the stdlib, or the repository."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    match = re.search(r"(?:/lib/python3\.\d+/|/(?=amazonsender/|bench/|tests/))(.*)$", path)
    return match.group(1) if match else path
