"""The server's continue-as-new suggestion, on a server that never makes it.

The time-skipping test server cannot be configured to suggest continue-as-new (the dev server
can: `limit.historyCount.suggestContinueAsNew`, see tests/test_continue_as_new.py). This worker
interceptor makes `workflow.info().is_continue_as_new_suggested()` true once the run's history
is `after_events` long, as that dev-server limit does, through the SDK's public interceptor API
and without touching the workflow: the lifecycle reacts to it as it would in production.
"""

from __future__ import annotations

import dataclasses

from temporalio import workflow
from temporalio.worker import (
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)


@dataclasses.dataclass(frozen=True)
class _SuggestingInfo(workflow.Info):
    after_events: int = 0

    def is_continue_as_new_suggested(self) -> bool:
        return self.get_current_history_length() >= self.after_events


class SuggestContinueAsNew(Interceptor):
    """Suggest continue-as-new once a run's history holds `after_events` events."""

    def __init__(self, after_events: int) -> None:
        self.after_events = after_events

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        after_events = self.after_events

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound, after_events))

        return Inbound


class _Outbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, after_events: int) -> None:
        super().__init__(next)
        self._after_events = after_events

    def info(self) -> workflow.Info:
        # A fresh copy on every call: upserted search attributes change the SDK's own Info.
        base = super().info()
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
        return _SuggestingInfo(**fields, after_events=self._after_events)
