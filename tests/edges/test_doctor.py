"""`autofix doctor` against the loopback fakes: Kubernetes API (with SelfSubjectAccessReviews answered from
the shipped ClusterRole), a real bare git repo, the GitHub fake and a real MLflow sqlite store."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from app import cli, doctor
from app import settings as settings_mod
from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import SSAR_PATH, KubeApiFake

TOKEN = "ghp_doctortoken0123456789"
SHIPPED_ROLE = ROOT / "deploy" / "kustomize" / "clusterrole.yaml"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_uri: str) -> Iterator[dict[str, object]]:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(EXAMPLES / "demo" / "repo", bare)
    snapshot = json.loads((EXAMPLES / "demo" / "cluster.json").read_text())
    with KubeApiFake(snapshot["items"], logs=snapshot.get("logs")) as kube, \
            FakeGitHub("acme/gitops", token=TOKEN) as github:
        kube.access_rules = yaml.safe_load(SHIPPED_ROLE.read_text())["rules"]
        env = {"KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")), "AUTOFIX_GIT_URL": str(bare),
               "AUTOFIX_GITHUB_REPO": "acme/gitops", "AUTOFIX_GITHUB_API_URL": github.api_url,
               "GITHUB_TOKEN": TOKEN, "MLFLOW_TRACKING_URI": mlflow_uri, "AUTOFIX_DATA_DIR": str(tmp_path / "data")}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield {"kube": kube, "github": github, "bare": bare}


def rows(output: str) -> dict[str, str]:
    """check name -> status, from the printed table."""
    found = {}
    for line in output.splitlines()[2:]:
        for status in (" OK ", " FAIL ", " SKIP "):
            if status in line:
                found[line.split(status)[0].strip()] = status.strip()
    return found


@pytest.mark.e2e  # waits out a real timeout or spacing: the slow part
def test_all_checks_pass_with_the_shipped_rbac(world: dict[str, object],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["doctor"])
    out = capsys.readouterr().out

    assert rows(out) == {"policy": "OK", "job store": "OK", "cluster": "OK", "cluster permissions": "OK", "forge": "OK",
                         "git clone and push": "OK", "mlflow": "OK", "llm": "SKIP", "prometheus": "SKIP",
                         "kustomize": "OK", "helm": "OK"}, out  # this machine's kubectl embeds kustomize v5
    assert code == 0
    assert "no write verb, no Secrets" in out
    kube = world["kube"]
    assert isinstance(kube, KubeApiFake)
    reviews = [r for r in kube.requests if r.method == "POST"]
    assert reviews and all(r.path == SSAR_PATH for r in reviews)  # the only non-GET the bot sends
    heads = subprocess.run(["git", "for-each-ref", "--format=%(refname)"], cwd=world["bare"], check=True,
                           capture_output=True, text=True).stdout.split()
    assert heads == ["refs/heads/main"]  # the scratch branch was pushed, then deleted
    assert "pushed and deleted autofix/doctor/" in out


@pytest.mark.e2e  # runs the service or servers for real: the slow part
def test_failures_are_reported_and_exit_non_zero(world: dict[str, object], monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    kube, github = world["kube"], world["github"]
    assert isinstance(kube, KubeApiFake) and isinstance(github, FakeGitHub)
    kube.access_rules = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]  # cluster-admin
    github.push_allowed = False
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: nothing listens
    monkeypatch.setenv("AUTOFIX_GIT_URL", str(Path(str(world["bare"])).parent / "missing.git"))

    code = cli.main(["doctor"])
    out = capsys.readouterr().out

    found = rows(out)
    assert code == 1
    assert found["cluster permissions"] == "FAIL" and "must NOT have" in out and "get secrets" in out
    assert found["forge"] == "FAIL" and "cannot push" in out
    assert found["git clone and push"] == "FAIL"
    assert found["llm"] == "FAIL" and "unreachable" in out
    assert found["cluster"] == "OK" and found["mlflow"] == "OK"


@pytest.mark.e2e  # runs the service or servers for real: the slow part
def test_missing_read_permission_is_named(world: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    kube = world["kube"]
    assert isinstance(kube, KubeApiFake)
    rules = yaml.safe_load(SHIPPED_ROLE.read_text())["rules"]
    kube.access_rules = [r for r in rules if "argoproj.io" not in r["apiGroups"]]

    assert cli.main(["doctor"]) == 1
    assert "missing 2: get applications.argoproj.io" in capsys.readouterr().out  # get, list


@pytest.mark.e2e  # runs the service or servers for real: the slow part
def test_llm_check_lists_the_models_of_a_compatible_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import http.server
    import threading

    class Models(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            ok = self.path == "/v1/models" and self.headers.get("Authorization") == "Bearer sk-local"
            body = json.dumps({"object": "list", "data": [{"id": "qwen2.5-7b-instruct", "object": "model",
                                                           "created": 1731000000, "owned_by": "vllm"}]}
                              if ok else {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}})
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = settings_mod.load(OPENAI_API_KEY="sk-local", AUTOFIX_LLM_MODEL="qwen2.5-7b-instruct",
                                     OPENAI_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}/v1")
        status, detail = doctor._llm(settings)
        assert (status, detail.endswith("model qwen2.5-7b-instruct is served")) == ("ok", True)
        wrong = settings.model_copy(update={"openai_api_key": SecretStr("sk-wrong")})
        assert doctor._guard("llm", lambda: doctor._llm(wrong)).status == "fail"
    finally:
        server.shutdown()
        server.server_close()
