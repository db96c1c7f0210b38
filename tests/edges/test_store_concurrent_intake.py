"""Two replicas storing the same new alerts at once, listed in opposite orders (two Alertmanager HA peers, each
grouping its own way): on PostgreSQL each insert waits on the other's uncommitted row, a deadlock the server
breaks by failing one webhook. Intake takes one transaction-scoped advisory lock (app/adapters/store.py
INTAKE_LOCK_KEY), so no webhook fails and each alert is one job. Run on SQLite too, where BEGIN IMMEDIATE does it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.adapters.store import JobStore
from app.models.alertmanager import WebhookPayload
from benchmarks.alerts import oom_alert, payload

ROUNDS, ALERTS = 40, 20


@pytest.mark.timeout(120)
def test_replicas_storing_the_same_alerts_in_opposite_orders_never_fail_a_webhook(
        store_location: Path | str) -> None:
    JobStore(store_location).close()  # migrated once, before the race
    errors: list[str] = []
    jobs: list[list[int]] = [[], []]
    barrier = threading.Barrier(2, timeout=30)

    def replica(index: int) -> None:
        store = JobStore(store_location)
        try:
            for round_ in range(ROUNDS):
                alerts = [oom_alert("shop", f"checkout-{round_}-{k}", "checkout") for k in range(ALERTS)]
                if index:
                    alerts.reverse()
                body = WebhookPayload.model_validate(payload(alerts, {"namespace": "shop"}))
                barrier.wait()
                try:
                    stored = store.enqueue(body)
                except Exception as err:  # noqa: BLE001 - what a webhook would answer 503 for
                    errors.append(str(err))
                    continue
                jobs[index] += sorted(r.job_id for r in stored)
        finally:
            store.close()

    threads = [threading.Thread(target=replica, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert errors == []
    assert jobs[0] == jobs[1] and len(set(jobs[0])) == ROUNDS * ALERTS  # both answers name the same one job per alert
