"""The PanDA HTTP client (comm/http.py) against the fake server's transport: keep-alive connections,
TLS verification, the X.509 proxy and the token, timeouts and the mapping of failures.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests.adapters

from hpcpilot.comm import panda_api
from hpcpilot.comm.http import HttpClient, env_proxies
from hpcpilot.config.schema import PandaSettings
from hpcpilot.model.errors import CommunicatorError
from tests.conftest import need
from tests.fakes import certs
from tests.fakes.panda_server import FakePandaServer

CALLS = 12


def settings(url: str, **options: Any) -> PandaSettings:
    return PandaSettings(
        **{"url": url, "timeout_s": 2.0, "retries": 1, "backoff_s": 0.01, "backoff_max_s": 0.02, **options}
    )


def ask(client: HttpClient) -> list[int]:
    """One acquire_jobs call; the PandaIDs served."""
    request = panda_api.acquire_jobs(panda_api.Api.V1, site_name="Q", n_jobs=1, node="n")
    reply = client.call(
        request.encode(), lambda r: panda_api.parse_acquire_jobs(panda_api.Api.V1, json.loads(r.body))
    )
    return [int(job["PandaID"]) for job in reply.jobs]


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    need(certs.available(), "the cryptography package (hpcpilot[dev])")
    ca = certs.make_ca(tmp_path, "ca")
    return {
        "ca": ca,
        "other_ca": certs.make_ca(tmp_path, "other-ca"),
        "server": certs.issue(ca, tmp_path, "server"),
        "proxy": certs.issue(ca, tmp_path, "pilot", client=True).combined(tmp_path / "x509up"),
    }


@pytest.fixture
def tls_fake(pki: dict[str, Any]) -> Iterator[FakePandaServer]:
    with FakePandaServer(tls=(pki["server"].cert, pki["server"].key)) as fake:
        yield fake


# --------------------------------------------------------------------------- keep-alive


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_many_calls_share_one_connection(scheme: str, pki: dict[str, Any]) -> None:
    tls = (pki["server"].cert, pki["server"].key) if scheme == "https" else None
    with FakePandaServer(tls=tls) as fake:
        fake.add_job({"PandaID": 1, "transformation": "true"})
        client = HttpClient(settings(fake.url, ca_path=str(pki["ca"].cert)), {})
        served = [ask(client) for _ in range(CALLS)]
        assert served[0] == [1] and served[1:] == [[]] * (CALLS - 1)
        assert len(fake.calls) == CALLS
        assert fake.connections == 1  # the urllib client opened one per call (CALLS)
        client.close()


def test_a_connection_the_server_closed_is_replaced(pki: dict[str, Any]) -> None:
    with FakePandaServer(tls=(pki["server"].cert, pki["server"].key)) as fake:
        client = HttpClient(settings(fake.url, ca_path=str(pki["ca"].cert)), {})
        ask(client)
        fake.drop_connections()  # as after Apache's KeepAliveTimeout
        ask(client)  # retries=1: the closed connection was not tried
        assert len(fake.calls) == 2 and fake.connections == 2


def test_an_outage_closes_kept_connections_and_the_client_comes_back(pki: dict[str, Any]) -> None:
    with FakePandaServer() as fake:
        client = HttpClient(settings(fake.url), {})
        ask(client)
        fake.down_for(2.0)
        with pytest.raises(CommunicatorError) as down:
            ask(client)  # the kept connection went down with the server: no reply from it
        assert down.value.retryable
        deadline = time.monotonic() + 10
        while True:
            try:
                ask(client)
                break
            except CommunicatorError:
                assert time.monotonic() < deadline, "the fake did not come back"
                time.sleep(0.05)
        assert fake.calls[-1].call == "acquire_jobs"


# --------------------------------------------------------------------------- TLS


def test_a_server_certificate_from_another_ca_is_refused(
    tls_fake: FakePandaServer, pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests would add its own CA bundle to every connection: make that bundle the server's CA, so
    # that only a client that trusts panda.ca_path alone refuses the server
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(pki["ca"].cert))
    client = HttpClient(settings(tls_fake.url, ca_path=str(pki["other_ca"].cert), retries=3), {})
    with pytest.raises(CommunicatorError) as refused:
        ask(client)
    assert not refused.value.retryable
    assert "not trusted" in str(refused.value) and "panda.ca_path" in str(refused.value)
    assert tls_fake.calls == []  # nothing got through, and it was not retried
    assert tls_fake.connections == 1
    trusting = HttpClient(settings(tls_fake.url, ca_path=str(pki["ca"].cert)), {})
    assert ask(trusting) == []


def test_a_ca_directory_from_x509_cert_dir_is_used(tls_fake: FakePandaServer, pki: dict[str, Any]) -> None:
    openssl = shutil.which("openssl")
    need(openssl is not None, "openssl (for the hash name of a CA directory)")
    assert openssl is not None
    subject_hash = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", str(pki["ca"].cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    directory = pki["ca"].cert.parent / "certificates"  # as /etc/grid-security/certificates
    directory.mkdir()
    (directory / f"{subject_hash}.0").write_bytes(pki["ca"].cert.read_bytes())
    client = HttpClient(settings(tls_fake.url), {"X509_CERT_DIR": str(directory)})
    assert ask(client) == []
    assert tls_fake.connections == 1


def test_the_x509_proxy_is_the_client_certificate(pki: dict[str, Any]) -> None:
    server = pki["server"]
    with FakePandaServer(tls=(server.cert, server.key), client_ca=pki["ca"].cert) as fake:
        with_proxy = HttpClient(settings(fake.url, ca_path=str(pki["ca"].cert), proxy=str(pki["proxy"])), {})
        for _ in range(3):
            assert ask(with_proxy) == []
        assert len(fake.calls) == 3 and fake.connections == 1
        from_env = HttpClient(
            settings(fake.url, ca_path=str(pki["ca"].cert)), {"X509_USER_PROXY": str(pki["proxy"])}
        )
        assert ask(from_env) == []
        without = HttpClient(settings(fake.url, ca_path=str(pki["ca"].cert)), {})
        with pytest.raises(CommunicatorError, match="cannot reach"):
            ask(without)
        assert len(fake.calls) == 4  # the anonymous call never reached the server


def test_the_token_goes_with_every_call_and_a_refreshed_one_at_once(
    tls_fake: FakePandaServer, pki: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = tmp_path / "token"
    token.write_text("t0ken-one\n")
    token.chmod(0o600)
    client = HttpClient(
        settings(tls_fake.url, ca_path=str(pki["ca"].cert), token_file=str(token), origin="atlas.pilot"), {}
    )
    ask(client)
    token.write_text("t0ken-two-refreshed\n")
    ask(client)
    auth = [(c.headers.get("Authorization"), c.headers.get("Origin")) for c in tls_fake.calls]
    assert auth == [("Bearer t0ken-one", "atlas.pilot"), ("Bearer t0ken-two-refreshed", "atlas.pilot")]
    assert tls_fake.connections == 1
    assert "t0ken" not in caplog.text


# --------------------------------------------------------------------------- nothing implicit


def test_the_environment_of_the_process_is_not_consulted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with FakePandaServer() as fake:
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login someone password s3cret\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        client = HttpClient(settings(fake.url), {})  # the environment it is given is empty
        assert ask(client) == []
        assert "Authorization" not in fake.calls[0].headers
        assert fake.calls[0].headers.get("User-Agent") == "hpcpilot"


class ConnectProxy(socketserver.ThreadingTCPServer):
    """A minimal HTTP proxy for https: answers CONNECT and then relays bytes both ways."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.targets: list[str] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


class _Tunnel(socketserver.StreamRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        method, target, _ = self.rfile.readline().decode().split()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        self.server.targets.append(f"{method} {target}")
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            relay = threading.Thread(target=_copy, args=(upstream, self.connection), daemon=True)
            relay.start()
            _copy(self.connection, upstream)
            relay.join(timeout=5)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)


def test_an_https_proxy_from_the_environment_tunnels_every_call(
    tls_fake: FakePandaServer, pki: dict[str, Any]
) -> None:
    proxy = ConnectProxy()
    try:
        env = {"https_proxy": f"http://127.0.0.1:{proxy.server_address[1]}"}
        client = HttpClient(settings(tls_fake.url, ca_path=str(pki["ca"].cert)), env)
        for _ in range(3):
            assert ask(client) == []
        assert proxy.targets == [f"CONNECT 127.0.0.1:{tls_fake.port}"]  # one tunnel, kept
        assert len(tls_fake.calls) == 3 and tls_fake.connections == 1
        bypass = HttpClient(
            settings(tls_fake.url, ca_path=str(pki["ca"].cert)), {**env, "no_proxy": "127.0.0.1"}
        )
        assert ask(bypass) == []
        assert len(proxy.targets) == 1 and tls_fake.connections == 2
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_env_proxies_follows_the_proxy_variables() -> None:
    url = "https://pandaserver.cern.ch:25443"
    assert env_proxies(url, {}) == {}
    assert env_proxies(url, {"https_proxy": "http://squid:3128"}) == {"https": "http://squid:3128"}
    assert env_proxies(url, {"HTTPS_PROXY": "http://squid:3128"}) == {"https": "http://squid:3128"}
    assert env_proxies(url, {"http_proxy": "http://squid:3128"}) == {}  # another scheme's proxy
    for no_proxy in ("*", "cern.ch", ".cern.ch", "pandaserver.cern.ch", "x.org, cern.ch:25443"):
        assert env_proxies(url, {"https_proxy": "http://squid:3128", "no_proxy": no_proxy}) == {}, no_proxy
    for no_proxy in ("ern.ch", "cern.ch:443", "other.cern.ch"):
        assert env_proxies(url, {"https_proxy": "p", "NO_PROXY": no_proxy}) == {"https": "p"}, no_proxy


# --------------------------------------------------------------------------- failures


def test_a_timeout_is_retryable_and_the_next_call_gets_through() -> None:
    with FakePandaServer() as fake:
        fake.delay_next(1, 3.0)
        client = HttpClient(settings(fake.url, timeout_s=1.0), {})
        with pytest.raises(CommunicatorError, match="timed out") as late:
            ask(client)
        assert late.value.retryable and late.value.context["path"] == "/api/v1/pilot/acquire_jobs"
        assert ask(client) == []
        assert fake.connections == 2  # the connection of the late reply is not reused


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (404, False),
        (403, False),
        (400, False),
        (302, False),
    ],
)
def test_http_statuses_map_to_errors(status: int, retryable: bool) -> None:
    with FakePandaServer() as fake:
        fake.fail_next(1, status)
        client = HttpClient(settings(fake.url), {})
        with pytest.raises(CommunicatorError) as failed:
            ask(client)
        assert failed.value.retryable is retryable
        assert failed.value.context["status"] == status and f"HTTP {status}" in str(failed.value)
        assert ask(client) == []  # a redirect is not followed; the next call goes out as usual
        assert len(fake.calls) == 2 and fake.connections == 1


def test_retryable_failures_are_retried_by_call_alone() -> None:
    with FakePandaServer() as fake:
        fake.fail_next(2, 503)
        fake.drop_next(1)
        client = HttpClient(settings(fake.url, retries=4), {})
        assert ask(client) == []
        assert [c.status for c in fake.calls] == [503, 503, 0, 200]  # one attempt each, no hidden ones


def test_a_refused_connection_is_retryable() -> None:
    with FakePandaServer() as fake:
        url = fake.url
    client = HttpClient(settings(url), {})
    with pytest.raises(CommunicatorError, match="cannot reach") as refused:
        ask(client)
    assert refused.value.retryable and "status" not in refused.value.context
