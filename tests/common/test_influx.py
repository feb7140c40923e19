from __future__ import annotations

import logging
import math
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.http_peer import Answer, http_peer
from tests.drip import drip_server
from tests.influxd import InfluxServer, free_port
from wattwise.clock import ManualClock
from wattwise.common.influx import InfluxTransport, classify_response
from wattwise.common.secrets import Secret
from wattwise.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    RejectedBatch,
    TransientDeliveryError,
)

T0 = 1_700_000_000_000_000_000
GOOD = [b"gpu,host=a,gpu=0 power_w=300.5 %d" % T0, b"gpu,host=a,gpu=1 power_w=250.0 %d" % T0]


def test_v1_write_reaches_a_real_influxd(influxd: InfluxServer) -> None:
    influxd.create_database("influx_v1")
    transport = InfluxTransport(influxd.url, database="influx_v1")
    transport.write(GOOD)
    rows = influxd.rows("SELECT * FROM gpu", "influx_v1")
    assert sorted((r["gpu"], r["power_w"], r["time"]) for r in rows) == [
        ("0", 300.5, T0),
        ("1", 250.0, T0),
    ]


def test_malformed_line_is_rejected_with_influxdbs_reason(influxd: InfluxServer) -> None:
    influxd.create_database("influx_bad")
    transport = InfluxTransport(influxd.url, database="influx_bad")
    with pytest.raises(RejectedBatch, match="unable to parse 'gpu v=nonsense!! 1'"):
        transport.write([b"gpu v=nonsense!! 1"])


def test_field_type_conflict_is_rejected(influxd: InfluxServer) -> None:
    influxd.create_database("influx_conflict")
    transport = InfluxTransport(influxd.url, database="influx_conflict")
    transport.write([b"m v=1.0 1"])
    with pytest.raises(RejectedBatch, match="field type conflict"):
        transport.write([b"m v=2i 2"])


def test_missing_database_is_transient_and_says_not_found(influxd: InfluxServer) -> None:
    transport = InfluxTransport(influxd.url, database="never_created")
    with pytest.raises(TransientDeliveryError, match="database not found"):
        transport.write(GOOD)


def test_v2_endpoint_on_influxdb_1_6_is_a_clear_not_found(influxd: InfluxServer) -> None:
    transport = InfluxTransport(influxd.url, api="v2", bucket="b", token=Secret("t"))
    with pytest.raises(TransientDeliveryError, match=r"HTTP 404.*not found"):
        transport.write(GOOD)


def test_too_large_body_is_batch_too_large(tmp_path: Path) -> None:
    server = InfluxServer(tmp_path, max_body_bytes=2000)
    server.start()
    try:
        server.create_database("small")
        transport = InfluxTransport(server.url, database="small")
        many = [b"m,host=h%d v=%d.5 %d" % (i, i * 7919 % 10007, T0 + i) for i in range(2000)]
        with pytest.raises(BatchTooLarge):
            transport.write(many)
        transport.write(many[:10])
        assert len(server.rows("SELECT v FROM m", "small")) == 10
    finally:
        server.stop()


def test_wrong_password_is_auth_error_and_never_shows_the_password(
    influxd_auth: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    influxd_auth.create_database("secured")
    password = "hunter2-very-secret"
    transport = InfluxTransport(
        influxd_auth.url, database="secured", username="admin", password=Secret(password)
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as caught:
        transport.write(GOOD)
    assert password not in str(caught.value) and password not in repr(caught.value)
    assert password not in repr(transport) and password not in caplog.text
    right = InfluxTransport(
        influxd_auth.url, database="secured", username="admin", password=Secret("admin-secret")
    )
    right.write(GOOD)
    assert len(influxd_auth.rows("SELECT * FROM gpu", "secured")) == 2


def test_v2_sends_gzip_token_org_bucket_and_ns_precision_to_a_real_http_peer() -> None:
    token = "tok-abc-123"
    with http_peer([Answer(204)]) as peer:
        transport = InfluxTransport(
            peer.url, api="v2", org="acme", bucket="telemetry", token=Secret(token)
        )
        transport.write(GOOD)
    (request,) = peer.requests
    assert request.path.startswith("/api/v2/write?")
    assert set(request.path.split("?")[1].split("&")) == {
        "bucket=telemetry",
        "org=acme",
        "precision=ns",
    }
    assert request.headers["authorization"] == f"Token {token}"
    assert request.headers["content-encoding"] == "gzip"
    assert request.lines() == GOOD
    assert token not in repr(transport)


def test_v2_message_field_is_the_rejection_reason() -> None:
    body = b'{"code":"invalid","message":"unable to parse line 1"}'
    with http_peer([Answer(400, {"Content-Type": "application/json"}, body)]) as peer:
        transport = InfluxTransport(peer.url, api="v2", bucket="b", token=Secret("t"))
        with pytest.raises(RejectedBatch, match=r"^unable to parse line 1$"):
            transport.write(GOOD)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_passed_on(status: int) -> None:
    with http_peer([Answer(status, {"Retry-After": "7"})]) as peer:
        transport = InfluxTransport(peer.url, database="db")
        with pytest.raises(TransientDeliveryError) as caught:
            transport.write(GOOD)
    assert caught.value.retry_after_s == 7.0


def test_retry_after_http_date_is_relative_to_the_clock() -> None:
    clock = ManualClock(start_ns=1_445_412_480 * 10**9)  # Wed, 21 Oct 2015 07:28:00 GMT
    with pytest.raises(TransientDeliveryError) as caught:
        classify_response(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, "", clock)
    assert caught.value.retry_after_s == pytest.approx(30.0)


def test_connection_refused_is_transient() -> None:
    transport = InfluxTransport(f"http://127.0.0.1:{free_port()}", database="db")
    with pytest.raises(TransientDeliveryError, match="ConnectError"):
        transport.write(GOOD)


def test_v1_without_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"influx\.database"):
        InfluxTransport("http://127.0.0.1:1", api="v1")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(name: str, cwd: Path, san: str | None) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd,
    )  # fmt: skip
    extra: list[str] = []
    if san:
        (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", *extra, cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private CA with a server certificate for 127.0.0.1 and a client certificate."""
    root = tmp_path_factory.mktemp("pki")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=wattwise test CA",
        cwd=root,
    )  # fmt: skip
    _issue("server", root, "IP:127.0.0.1")
    _issue("client", root, None)
    yield root


def _mutual_tls(pki: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_tls_with_custom_ca_and_client_certificate(pki: Path) -> None:
    with http_peer([Answer(204)], tls=_mutual_tls(pki)) as peer:
        transport = InfluxTransport(
            peer.url,
            database="db",
            ca_file=pki / "ca.pem",
            client_cert=pki / "client.pem",
            client_key=pki / "client.key",
        )
        transport.write(GOOD)
    assert peer.requests[0].lines() == GOOD


def test_tls_server_unknown_to_the_system_trust_store_is_refused(pki: Path) -> None:
    with http_peer([Answer(204)], tls=_mutual_tls(pki)) as peer:
        transport = InfluxTransport(peer.url, database="db")
        with pytest.raises(TransientDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            transport.write(GOOD)
    assert peer.requests == []


@pytest.mark.parametrize(
    "header", ["inf", "nan", "1e400", "-5", "Fri, 31 Dec 9999 23:59:59 GMT", "soon"]
)
def test_retry_after_that_is_no_finite_wait_is_never_passed_on_as_one(header: str) -> None:
    with http_peer([Answer(503, {"Retry-After": header})]) as peer:
        transport = InfluxTransport(peer.url, database="db")
        with pytest.raises(TransientDeliveryError) as caught:
            transport.write(GOOD)
    wait = caught.value.retry_after_s
    assert wait is None or (math.isfinite(wait) and wait >= 0)


def test_server_dripping_its_answer_is_abandoned_at_the_timeout_as_transient() -> None:
    with drip_server(interval_s=0.2) as server:
        transport = InfluxTransport(server.url, database="db", timeout_s=1.0)
        with pytest.raises(TransientDeliveryError, match=r"no answer within 1 s"):
            transport.write(GOOD)
        transport.close()
    assert server.requests  # the request got there; only the answer never ended


def test_answer_that_cannot_be_decoded_is_transient_not_an_escaping_httpx_error() -> None:
    broken = Answer(204, {"Content-Encoding": "gzip"}, b"this is not gzip")
    with http_peer([Answer(200, {"Content-Encoding": "gzip"}, b"not gzip either"), broken]) as peer:
        transport = InfluxTransport(peer.url, database="db")
        with pytest.raises(TransientDeliveryError, match="DecodingError"):
            transport.write(GOOD)
