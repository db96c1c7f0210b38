"""oom_killed: the memory limit of the killed container (init containers and CronJob job templates too) is
raised by the policy's step."""

from __future__ import annotations

import copy

from app import causes, fieldpaths
from app.models.causes import Cause, OomFacts
from tests.unit.detectors.support import DEFAULT, SHIPPED, Items, check_case, evidence, git, item


def test_cronjob_job_template_limit_is_raised() -> None:  # was test_detect_and_plan[oom-cronjob-job-template]
    check_case("oom-cronjob", "apps/nightly-export/cronjob.yaml", None, None, DEFAULT,
               {"spec.jobTemplate.spec.template.spec.containers[name=exporter].resources.limits.memory": "1536Mi"})


def test_init_container_oom_raises_the_init_container_limit() -> None:
    init = {"name": "warm-cache", "image": "ghcr.io/acme/cache-warmer:0.4.1",
            "resources": {"requests": {"memory": "128Mi"}, "limits": {"memory": "256Mi"}}}

    def oom_in_init(items: Items) -> None:
        item(items, "Deployment")["spec"]["template"]["spec"]["initContainers"] = [copy.deepcopy(init)]
        for pod in (i for i in items if i["kind"] == "Pod"):
            pod["spec"]["initContainers"] = [copy.deepcopy(init)]
            for cs in pod["status"].get("containerStatuses") or []:
                cs["lastState"] = {}
            pod["status"]["initContainerStatuses"] = [{
                "name": "warm-cache", "image": init["image"], "imageID": "", "ready": False, "restartCount": 4,
                "started": False, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": "2026-11-23T15:10:02Z",
                                             "finishedAt": "2026-11-23T15:10:31Z"}}}]

    ev = evidence("oom-deployment", mutate=oom_in_init, labels={"container": "warm-cache"})
    diagnosis = causes.diagnose(ev)[0]
    assert diagnosis.cause == Cause.OOM_KILLED
    assert isinstance(diagnosis.finding.facts, OomFacts) and diagnosis.finding.facts.init is True
    document = git("oom-deployment", "apps/checkout/deployment.yaml")
    document["spec"]["template"]["spec"]["initContainers"] = [copy.deepcopy(init)]
    plan = causes.plan(diagnosis, document, DEFAULT)
    assert {c.path: c.new for c in plan.changes} == {
        "spec.template.spec.initContainers[name=warm-cache].resources.limits.memory": "384Mi"}
    paths = SHIPPED["causes"]["oom_killed"]["paths"]
    assert any(fieldpaths.matches(plan.changes[0].path, g) for g in paths)
    job_init = "spec.jobTemplate.spec.template.spec.initContainers[name=x].resources.limits.memory"
    assert any(fieldpaths.matches(job_init, g) for g in paths), "CronJob init containers too"
