"""The Prometheus adapter against the real ``prometheus`` binary (tests/fakes/prometheus.py) on 127.0.0.1.

What is asserted: the answers of query and query_range as RawSeries; Prometheus' own error bodies (bad_data,
execution) become TemporaryErrors naming prometheus and the call; a server that is down, silent, trickling or not
a Prometheus is unavailable with its kind, reported to the job's health observer and bounded by the job's budget;
the token, the tenant header and the CA file reach the server; only GET on the two query paths is ever sent.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import deadlines
from app.adapters.prometheus import PrometheusReader
from app.errors import TemporaryError
from tests.fakes.health import HealthRecorder
from tests.fakes.prometheus import DAY, HOUR, Container, MiB, PrometheusServer, Scenario, free_port
from tests.fakes.silent import SilentServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]  # a real prometheus, real (short) timeouts

POD_NEW = "checkout-7d9f8b6c5-x2lqz"
POD_OLD = "checkout-5c4b9f7d8-mw4rt"


def scenario() -> Scenario:
    s = Scenario(namespace="shop")
    limits = {"memory": "512Mi", "cpu": "500m"}
    s.replica("checkout", "5c4b9f7d8", suffix="mw4rt", start=-2 * DAY, end=-1 * DAY, containers=[
        Container("checkout", image="ghcr.io/acme/checkout:1.4.1", memory=200 * MiB, cpu=0.1, limits=limits)])
    s.replica("checkout", "7d9f8b6c5", suffix="x2lqz", start=-1 * DAY, containers=[
        Container("checkout", image="ghcr.io/acme/checkout:1.4.2", memory=300 * MiB, cpu=0.2, limits=limits)])
    return s


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scenario, PrometheusServer]]:
    s = scenario()
    with PrometheusServer(s, tmp_path_factory.mktemp("prometheus")) as server:
        yield s, server


def test_query_range_answers_one_series_per_pod_with_its_labels_and_samples_at_each_step(
        shop: tuple[Scenario, PrometheusServer]) -> None:
    s, server = shop
    reader = PrometheusReader(server.url)
    observer = HealthRecorder()
    with deadlines.running(deadlines.Deadline(60, observer=observer)):
        found = reader.query_range('max by (pod, image) (container_memory_working_set_bytes{namespace="shop", '
                                   'container="checkout"})', start=s.at(-6 * HOUR), end=s.alert_at, step=600)
    assert [(f.labels, len(f.points)) for f in found] == [
        ({"pod": POD_NEW, "image": "ghcr.io/acme/checkout:1.4.2"}, 37)]
    assert found[0].points[0] == (s.at(-6 * HOUR), 300 * MiB) and found[0].points[-1] == (s.alert_at, 300 * MiB)
    assert observer.kinds == [("ok", "prometheus")]
    reader.close()


def test_instant_query_at_a_past_time_sees_the_pods_that_ran_then(shop: tuple[Scenario, PrometheusServer]) -> None:
    s, server = shop
    reader = PrometheusReader(server.url)
    then = reader.query('count by (pod) (kube_pod_container_resource_limits{resource="memory"})', at=s.at(-36 * HOUR))
    scalar = reader.query("scalar(vector(42))", at=s.alert_at)
    assert [(r.labels, r.points) for r in then] == [({"pod": POD_OLD}, [(s.at(-36 * HOUR), 1.0)])]
    assert [(r.labels, r.points) for r in scalar] == [({}, [(s.alert_at, 42.0)])]
    assert reader.source == server.url


@pytest.mark.parametrize(("promql", "status", "error"), [
    pytest.param("sum(rate(container_cpu_usage_seconds_total[5m]", 400,
                 'bad_data: 1:47: parse error: unclosed left parenthesis',
                 id="bad_data-parse-error"),
    pytest.param("container_memory_working_set_bytes / on (namespace) kube_pod_container_resource_limits", 422,
                 "execution: found duplicate series for the match group", id="execution-many-to-one"),
])
def test_prometheus_error_bodies_become_the_message_naming_prometheus_and_the_call(
        shop: tuple[Scenario, PrometheusServer], promql: str, status: int, error: str) -> None:
    s, server = shop
    observer = HealthRecorder()
    with deadlines.running(deadlines.Deadline(60, observer=observer)), pytest.raises(TemporaryError) as caught:
        PrometheusReader(server.url).query_range(promql, start=s.at(-HOUR), end=s.alert_at, step=60)
    message = str(caught.value)
    assert message.startswith(f"prometheus: HTTP {status} {error}"), message
    assert message.endswith("(GET /api/v1/query_range)")
    assert (caught.value.dependency, caught.value.kind) == ("prometheus", "http_4xx")
    assert observer.kinds == [("error", "prometheus", "http_4xx")]


def test_too_many_points_is_prometheus_own_refusal(shop: tuple[Scenario, PrometheusServer]) -> None:
    s, server = shop
    with pytest.raises(TemporaryError, match=r"^prometheus: HTTP 400 bad_data: exceeded maximum resolution of "
                                             r"11,000 points per timeseries"):
        PrometheusReader(server.url).query_range("up", start=s.at(-7 * DAY), end=s.alert_at, step=1)


def test_a_server_that_is_down_is_refused_and_reported() -> None:
    observer = HealthRecorder()
    reader = PrometheusReader(f"http://127.0.0.1:{free_port()}")
    with deadlines.running(deadlines.Deadline(60, observer=observer)), pytest.raises(TemporaryError) as caught:
        reader.query_range("up", start=0, end=600, step=60)
    assert str(caught.value) == "prometheus: connection refused (GET /api/v1/query_range)"
    assert (caught.value.dependency, caught.value.kind) == ("prometheus", "refused")
    assert observer.kinds == [("error", "prometheus", "refused")]


def test_a_silent_server_is_cut_at_the_jobs_budget_not_the_read_timeout() -> None:
    observer = HealthRecorder()
    with SilentServer() as silent:
        reader = PrometheusReader(silent.url, timeout=(3.0, 30.0))
        with deadlines.running(deadlines.Deadline(1.0, observer=observer)), pytest.raises(TemporaryError) as caught:
            reader.query_range("up", start=0, end=600, step=60)
        reader.close()
    assert str(caught.value) == "prometheus: no answer within 1 s (GET /api/v1/query_range)", \
        "bounded by the 1 s job budget, not the 30 s read timeout"
    assert (caught.value.dependency, caught.value.kind) == ("prometheus", "timeout")
    assert observer.kinds == [("error", "prometheus", "timeout")]
    assert silent.accepted == 1


# ---- a loopback server that records what it is sent, and answers what a test tells it -------------------------


class Recorded(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, str, dict[str, str]]]
    answer: tuple[int, bytes, float]  # status, body, seconds between bytes (a trickle)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.requests.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
        status, body, pause = self.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if body.startswith(b"{") else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not pause:
            self.wfile.write(body)
            return
        for byte in body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(pause)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


@pytest.fixture
def recording() -> Iterator[tuple[str, type[Recorded]]]:
    handler = type("Handler", (Recorded,), {"requests": [], "answer": (200, b"", 0.0)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


MATRIX = (b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"checkout-7d9f8b6c5-x2lqz"},'
          b'"values":[[1700000000,"1"],[1700000060,"NaN"]]}]},"warnings":["partial response"]}')


def test_token_and_tenant_header_are_sent_on_a_get_of_the_query_path_only(
        recording: tuple[str, type[Recorded]]) -> None:
    url, handler = recording
    handler.answer = (200, MATRIX, 0.0)
    reader = PrometheusReader(url + "/prometheus/", token="glc_s3cr3t", headers={"X-Scope-OrgID": "team-shop"})
    found = reader.query_range('up{job="kubelet"}', start=1700000000, end=1700000060, step=60)
    assert [(f.labels, f.points[0]) for f in found] == [({"pod": "checkout-7d9f8b6c5-x2lqz"}, (1700000000.0, 1.0))]
    method, path, headers = handler.requests[0]
    assert (method, path) == ("GET", "/prometheus/api/v1/query_range?query=up%7Bjob%3D%22kubelet%22%7D"
                                     "&start=1700000000.000&end=1700000060.000&step=60")
    assert headers["authorization"] == "Bearer glc_s3cr3t" and headers["x-scope-orgid"] == "team-shop"
    assert reader.source == url + "/prometheus"


@pytest.mark.parametrize(("answer", "message", "kind"), [
    pytest.param((502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", 0.0),
                 "prometheus: HTTP 502 <html><body><h1>502 Bad Gateway</h1></body></html> (GET /api/v1/query)",
                 "http_5xx", id="proxy-502"),
    pytest.param((200, b"<html>Sign in to continue</html>", 0.0),
                 "prometheus: not a Prometheus API answer (GET /api/v1/query): <html>Sign in to continue</html>",
                 "invalid_response", id="login-page"),
    pytest.param((401, b"Unauthorized", 0.0), "prometheus: HTTP 401 Unauthorized (check AUTOFIX_PROMETHEUS_TOKEN "
                 "and AUTOFIX_PROMETHEUS_HEADERS) (GET /api/v1/query)", "http_4xx", id="unauthorized"),
    pytest.param((429, b'{"status":"error","errorType":"too_many_requests","error":"the query hit the max number of '
                       b'chunks limit"}', 0.0), "prometheus: HTTP 429 too_many_requests: the query hit the max number "
                 "of chunks limit (GET /api/v1/query)", "rate_limited", id="mimir-limit"),
    pytest.param((503, b'{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}',
                  0.0), "prometheus: HTTP 503 timeout: query timed out in expression evaluation (GET /api/v1/query)",
                 "http_5xx", id="query-timeout"),
])
def test_answers_that_are_not_a_result_are_unavailable_with_their_kind(
        recording: tuple[str, type[Recorded]], answer: tuple[int, bytes, float], message: str, kind: str) -> None:
    url, handler = recording
    handler.answer = answer
    observer = HealthRecorder()
    with deadlines.running(deadlines.Deadline(60, observer=observer)), pytest.raises(TemporaryError) as caught:
        PrometheusReader(url).query("up", at=1700000000)
    assert (str(caught.value), caught.value.kind) == (message, kind)
    assert observer.kinds == [("error", "prometheus", kind)]


def test_a_body_that_trickles_is_cut_at_connect_plus_read_seconds(recording: tuple[str, type[Recorded]]) -> None:
    url, handler = recording
    handler.answer = (200, MATRIX, 0.05)  # every byte within the read timeout, the whole far beyond
    with pytest.raises(TemporaryError) as caught:
        PrometheusReader(url, timeout=(0.5, 0.5)).query("up", at=1700000000)
    assert (str(caught.value), caught.value.kind) == (
        "prometheus: no complete answer within 1 s (GET /api/v1/query)", "timeout")


# ---- TLS: the real prometheus serving a certificate of our own CA ------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 it signed: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "monitoring CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prometheus")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_https_prometheus_is_trusted_through_the_ca_file_only(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    web = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    s = scenario()
    with PrometheusServer(s, tmp_path / "prometheus", web_config=web, ca_file=ca) as server:
        assert server.url.startswith("https://127.0.0.1:")
        trusted = PrometheusReader(server.url, ca_file=ca).query("count(container_memory_working_set_bytes)",
                                                                 at=s.alert_at)
        with pytest.raises(TemporaryError) as caught:
            PrometheusReader(server.url).query("up", at=s.alert_at)
    assert trusted[0].points[0][1] >= 1
    assert caught.value.kind == "unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)

