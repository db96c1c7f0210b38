"""Unpullable image after a rollout: go back to the image of the previous ReplicaSet shown to have worked
(serving now, or scaled down after running long enough: app/detectors/revisions.py)."""

from __future__ import annotations

from typing import Any

from app import kube
from app.detectors import revisions
from app.models.causes import Cause, GitQuestion, ImagePullFacts, ImageRollbackFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})
REASONS = PULL_REASONS
# Messages that say the registry answered and refused credentials: a rollback would hide the real problem.
AUTH_MARKERS = ("unauthorized", "pull access denied", "authentication required", "403 forbidden")


def detect(ev: Evidence) -> Diagnosis | None:
    failing = _failing(ev)
    if not failing:
        return None
    wanted = ev.incident.container
    failing.sort(key=lambda f: f["container"] != wanted)
    hit = failing[0]
    container, image, pod = hit["container"], hit["image"], hit["pod"]
    events = [e for e in ev.events_for("Pod", pod) if e.get("reason") in ("Failed", "BackOff")]
    messages = [str(e.get("message", "")) for e in events]
    lines = [f"pod {pod} container {container}: waiting reason={hit['reason']} image={image}",
             *([f"message: {hit['message']}"] if hit["message"] else []),
             *[kube.event_line(e) for e in events[:5]]]
    facts = ImagePullFacts(container=container, init=hit["init"], failing_image=image, pod=pod)
    finding = Finding(
        cause=Cause.IMAGE_PULL_AFTER_ROLLOUT, confidence=0.9, container=container,
        root_cause=f"Image {image} of container {container} in {ev.workload.short} cannot be pulled.",
        evidence=lines, facts=facts,
    )
    if any(m in msg.lower() for msg in messages + [hit["message"]] for m in AUTH_MARKERS):
        return Diagnosis(detector="image_pull", finding=finding, fixable=False,
                         no_fix_reason=("the registry refused the pull credentials (unauthorized): check the "
                                        "imagePullSecrets and the registry's access, not the image tag"))
    previous = _previous_working(ev, container, image)
    if previous is None:  # git's history of the image may still show one (app/stages/revision.py)
        asking = finding.model_copy(update={"facts": facts.model_copy(update={"ask_git": GitQuestion()})})
        return Diagnosis(detector="image_pull", finding=asking, fixable=False,
                         no_fix_reason=(f"no previous working revision of {ev.workload.short} ran another image of "
                                        f"container {container}: fix the image reference by hand"))
    if isinstance(previous, revisions.Unproven):
        rs = previous.replicaset
        question = GitQuestion(replicaset=kube.name(rs), revision=kube.revision(rs), image=_image_of(rs, container))
        unproven = finding.model_copy(update={
            "evidence": [*lines, *previous.lines],
            "facts": facts.model_copy(update={"ask_git": question}) if previous.git_may_tell else facts})
        return Diagnosis(detector="image_pull", finding=unproven, fixable=False,
                         no_fix_reason=f"{previous.reason}: fix the image reference by hand")
    rs = previous.replicaset
    good_image = _image_of(rs, container)
    rollback = ImageRollbackFacts(**facts.model_dump(), previous_image=good_image,
                                  previous_replicaset=kube.name(rs), previous_revision=kube.revision(rs),
                                  previous_ran_seconds=previous.ran_seconds)
    ran = "" if previous.ran_seconds is None else f" {previous.summary}"
    finding = finding.model_copy(update={
        "facts": rollback,
        "root_cause": (f"The rollout of {ev.workload.short} to image {image} failed: the image cannot be pulled; "
                       f"revision {kube.revision(rs)} ran {good_image}{ran}."),
        "evidence": [*lines, *previous.lines],
    })
    return Diagnosis(detector="image_pull", finding=finding)


def _failing(ev: Evidence) -> list[dict[str, Any]]:
    out = []
    for pod in ev.pods:
        spec = pod.get("spec") or {}
        for cs, init in kube.container_statuses(pod):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in PULL_REASONS:
                c, _ = kube.container_spec(spec, str(cs.get("name")))
                out.append({"pod": kube.name(pod), "container": cs.get("name"), "init": init,
                            "image": (c or {}).get("image") or cs.get("image"), "reason": waiting.get("reason"),
                            "message": str(waiting.get("message") or "")})
    return out


def _image_of(rs: dict[str, Any], container: str) -> str:
    spec, _ = kube.container_spec(kube.pod_spec_of(rs, "ReplicaSet"), container)
    return str((spec or {}).get("image") or "")


def _previous_working(ev: Evidence, container: str,
                      failing_image: str) -> revisions.Worked | revisions.Unproven | None:
    """The newest older ReplicaSet that ran another image for ``container``, judged on the evidence that it
    worked (serving now, or running until this rollout scaled it down): no fix beats a wrong fix."""
    return revisions.previous(ev, differs=lambda rs: _image_of(rs, container) not in ("", failing_image),
                              ran=lambda rs: _image_of(rs, container))
