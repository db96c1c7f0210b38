"""Unpullable image after a rollout: go back to the image of the previous ReplicaSet whose pods ran."""

from __future__ import annotations

from typing import Any

from app import kube
from app.models.causes import Cause, ImagePullFacts, ImageRollbackFacts
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
    if previous is None:
        return Diagnosis(detector="image_pull", finding=finding, fixable=False,
                         no_fix_reason=(f"no previous working revision of {ev.workload.short} ran another image of "
                                        f"container {container}: fix the image reference by hand"))
    rs, good_image = previous
    rollback = ImageRollbackFacts(**facts.model_dump(), previous_image=good_image,
                                  previous_replicaset=kube.name(rs), previous_revision=kube.revision(rs))
    finding = finding.model_copy(update={
        "facts": rollback,
        "root_cause": (f"The rollout of {ev.workload.short} to image {image} failed: the image cannot be pulled; "
                       f"revision {kube.revision(rs)} ran {good_image}."),
        "evidence": [*lines, f"replicaset {kube.name(rs)} (revision {kube.revision(rs)}) ran {good_image} with "
                             f"{(rs.get('status') or {}).get('readyReplicas', 0)} ready pod(s)"],
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


def _previous_working(ev: Evidence, container: str, failing_image: str) -> tuple[dict[str, Any], str] | None:
    """The newest older ReplicaSet whose pods became ready, with the image it ran for ``container``."""
    for rs in ev.replicasets:  # newest revision first
        spec, _ = kube.container_spec(kube.pod_spec_of(rs, "ReplicaSet"), container)
        image = (spec or {}).get("image")
        if not image or image == failing_image:
            continue
        status = rs.get("status") or {}
        # Only a ReplicaSet seen serving proves the image runs: no fix beats a wrong fix.
        if int(status.get("readyReplicas") or 0) > 0 or int(status.get("availableReplicas") or 0) > 0:
            return rs, str(image)
    return None

