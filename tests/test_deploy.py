"""Deployment files: gunicorn listens where BIND says (127.0.0.1 under
systemd, every interface in Docker), and deploy/amazonsender.service keeps
its hardening (issue 12, item 10)."""

from __future__ import annotations

import re
import shutil
import socket
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest

from tests.support.settings import ROOT
from tests.support.processes import Server, free_port, run_gunicorn, service_env, stop_process_group, wait_until_serving
from tests.support.ses_standin import SesStandIn

UNIT = ROOT / "deploy" / "amazonsender.service"
NGINX = ROOT / "deploy" / "nginx-amazonsender.conf"


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port`, from
    /proc/net/tcp and tcp6 (state 0A), as "a.b.c.d" or "v6:<hex>"."""
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/net/{name}").read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:
                continue
            if name == "tcp":
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
            else:
                found.add(f"v6:{address}")
    return found


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def gunicorn_with(env: dict, tmp_path, url: str):
    """`gunicorn wsgi:app` with exactly `env` (PORT and BIND as given),
    ready once `url`/healthz answers at all."""
    log_path = tmp_path / "gunicorn-bind.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, url, log_path)
    try:
        wait_until_serving(server, "/healthz", None)
        yield server
    finally:
        stop_process_group(proc)


# 127.0.0.2 is loopback too (all of 127.0.0.0/8): this machine only.
ALSO_LOOPBACK = pytest.mark.allow_hosts(["127.0.0.1", "127.0.0.2", "::1", "localhost"])


@ALSO_LOOPBACK
def test_bind_makes_gunicorn_listen_on_that_address_only(database_url, tmp_path):
    port, unused_port, second_port = free_port(), free_port(), free_port()
    with SesStandIn() as ses:
        env = service_env(
            tmp_path, database_url, ses, PORT=str(unused_port), BIND=f"127.0.0.1:{port}, 127.0.0.1:{second_port}"
        )
        with gunicorn_with(env, tmp_path, f"http://127.0.0.1:{port}") as server:
            assert listening_addresses(port) == {"127.0.0.1"}, server.log()
            assert listening_addresses(second_port) == {"127.0.0.1"}
            assert listening_addresses(unused_port) == set()  # PORT gives way to BIND
            # Another loopback address reaches a socket bound to every
            # interface, but not one bound to 127.0.0.1.
            assert accepts("127.0.0.1", port) and not accepts("127.0.0.2", port)


@ALSO_LOOPBACK
def test_without_bind_gunicorn_listens_on_every_interface(database_url, tmp_path):
    """What the Docker image needs: Docker forwards the published port to
    the container's own address, not to its 127.0.0.1."""
    with SesStandIn() as ses, run_gunicorn(service_env(tmp_path, database_url, ses), tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert listening_addresses(port) == {"0.0.0.0"}
        assert accepts("127.0.0.2", port)


# --- the systemd unit ------------------------------------------------------------------------------


def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> directive -> every value given, in order (systemd allows a
    directive more than once; configparser does not)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service_section():
    return unit_directives(UNIT.read_text())["Service"]


HARDENING = {
    "PrivateDevices": "true",
    "PrivateTmp": "true",
    "ProtectSystem": "strict",
    "ProtectHome": "true",
    "ProtectKernelModules": "true",
    "ProtectKernelLogs": "true",
    "ProtectKernelTunables": "true",
    "ProtectControlGroups": "true",
    "ProtectClock": "true",
    "ProtectHostname": "true",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "true",
    "RestrictSUIDSGID": "true",
    "LockPersonality": "true",
    "NoNewPrivileges": "true",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}


def test_the_unit_sets_every_hardening_directive(service_section):
    for name, value in HARDENING.items():
        assert service_section.get(name) == [value], (name, service_section.get(name))
    assert service_section["SystemCallFilter"][0] == "@system-service"
    # Only ever narrowed after that: a later line without ~ would add calls.
    assert all(value.startswith("~") for value in service_section["SystemCallFilter"][1:])


def test_the_code_directory_is_read_only(service_section):
    """ProtectSystem=strict makes every path read-only but those listed as
    writable; the service writes only to its private /tmp."""
    assert service_section["WorkingDirectory"] == ["/opt/amazonsender"]
    for name in ("ReadWritePaths", "StateDirectory", "RuntimeDirectory", "LogsDirectory", "CacheDirectory"):
        assert name not in service_section, (name, service_section[name])


def test_the_unit_binds_gunicorn_where_nginx_looks(service_section):
    environment = dict(value.split("=", 1) for value in service_section["Environment"])
    assert environment["BIND"] == "127.0.0.1:3000"
    (upstream,) = re.findall(r"upstream amazonsender \{\s*server ([^;\s]+)", NGINX.read_text())
    assert upstream == environment["BIND"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze (apt-get install systemd)")
def test_systemd_analyze_rates_the_unit_ok():
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (score,) = re.findall(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    # 8.0 ("EXPOSED") before the hardening; 1.3 with it.
    assert float(score) <= 1.5, result.stdout[-3000:]


# --- the Docker image -------------------------------------------------------------------------------


def test_the_dockerfile_base_image_is_pinned_or_says_how():
    """A digest in FROM, or a build argument for one with the way to find it."""
    text = (ROOT / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    if "@sha256:" in base:
        assert re.search(r"@sha256:[0-9a-f]{64}$", base), base
        return
    (default,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE)
    assert base == "${PYTHON_IMAGE}" and default.startswith("python:")
    assert "--build-arg PYTHON_IMAGE=python:3.11-slim@sha256:" in text
    assert "imagetools inspect" in text
    assert "BIND" not in re.sub(r"#.*", "", text)  # the container listens on every interface


@pytest.mark.parametrize("value", ["", " ", ",", ":3000", "3000", "127.0.0.1", "0.0.0.0:x"])
def test_a_blank_or_hostless_bind_stops_gunicorn_instead_of_listening_everywhere(tmp_path, value):
    """A stray `BIND=` in /etc/amazonsender.env overrides the unit's
    127.0.0.1:3000; gunicorn must refuse to start, not open every interface."""
    env = {**os.environ, "BIND": value, "PORT": str(free_port())}
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "BIND must be host:port" in proc.stdout + proc.stderr
