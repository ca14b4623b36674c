"""The Celery application of opsbook's workers and dispatchers (ADR 0017 §1).

Celery only wakes workers: every dispatch is committed on the execution row first, a lost
message is re-sent by the sweeper and a duplicate is refused by the claim
(:mod:`opsbook.cluster.dispatch`). Celery takes ~0.11 s to import, so it is imported inside
:func:`make_app`, never at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opsbook.cluster.dispatch import DRIVE_TASK

#: What the task calls for each message: ``drive(execution_id=, dispatch=, actor=, decision=,
#: queue=)`` -> outcome (``opsbook worker`` passes :func:`opsbook.cluster.worker.drive_message`
#: bound to its context).
Drive = Callable[..., str]

#: Redis transport: unacked messages come back after an hour (a duplicate is harmless and
#: recovery never waits for redelivery, ADR 0017 §4); the unacked sweep runs every second
#: rather than every ~100 s (spike: a killed worker's message back 3.7 s after its timeout).
REDIS_TRANSPORT_OPTIONS: dict[str, Any] = {
    "visibility_timeout": 3600,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}


def settings(broker_url: str) -> dict[str, Any]:
    """The Celery settings, exactly ADR 0017 §1 (a test pins them)."""
    conf: dict[str, Any] = {
        "broker_url": broker_url,
        "result_backend": None,  # no backend: a publish never waits on one
        "task_ignore_result": True,
        "task_acks_late": True,  # a killed worker's message comes back
        "worker_prefetch_multiplier": 1,
        "task_publish_retry_policy": {"max_retries": 0},  # never block on a down broker
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # the default (100) makes a worker give up
        # pinned: Celery 6 turns it on, which would cancel running slices in an outage
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_create_missing_queues": True,
    }
    if broker_url.startswith(("redis://", "rediss://", "redis+socket://", "sentinel://")):
        conf["broker_transport_options"] = dict(REDIS_TRANSPORT_OPTIONS)
    return conf


def make_app(broker_url: str, *, drive: Drive | None = None) -> Any:
    """A Celery app on ``broker_url`` with the ``opsbook.drive`` task registered. Producers
    (a server's dispatcher) pass no ``drive``; ``opsbook worker`` passes what drives each
    message (:func:`opsbook.cluster.worker.drive_message` bound to its context)."""
    # celery ships no type information (no py.typed, no stubs)
    from celery import Celery  # noqa: PLC0415

    app = Celery("opsbook", set_as_current=False)
    app.conf.update(settings(broker_url))

    # shared=False: only this app gets the task (a producer app in the same process must not
    # lend its context-less copy to the worker app's registry)
    @app.task(name=DRIVE_TASK, bind=True, shared=False)  # type: ignore[untyped-decorator]  # untyped
    def drive_task(
        task: Any,
        execution_id: str,
        dispatch: int,
        actor: str,
        decision: str | None = None,
    ) -> str:
        if drive is None:
            raise RuntimeError("opsbook.drive runs in `opsbook worker` only")
        info = task.request.delivery_info or {}
        queue = str(info.get("routing_key") or info.get("queue") or "")
        return drive(
            execution_id=execution_id,
            dispatch=int(dispatch),
            actor=actor,
            decision=decision,
            queue=queue,
        )

    return app
