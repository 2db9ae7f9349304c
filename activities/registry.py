"""Registry activities: every call carries an idempotency key derived from workflow and step."""

from __future__ import annotations

from temporalio import activity

from activities.registry_client import RegistryClient
from schemas.registry_api import (
    AchievementRegistration,
    AnnualReportRequest,
    ContractRegistrationResponse,
    EquityRegistrationResponse,
    EvaluationReminder,
    EvaluationReminderReceipt,
    EvaluationRequest,
    EvaluationRequestReceipt,
    LifecycleReportRequest,
    PocApplicationRequest,
    PocApplicationResponse,
    PocCancellationRequest,
    PocCancellationResponse,
    RegisterAchievementRequest,
    RegisterContractRequest,
    RegisterEquityRequest,
    ReportReceipt,
)


class RegistryActivities:
    def __init__(self, client: RegistryClient) -> None:
        self._client = client

    @activity.defn(name="registry.register_achievement")
    async def register_achievement(
        self, key: str, request: RegisterAchievementRequest
    ) -> AchievementRegistration:
        return await self._client.register_achievement(request, key)

    @activity.defn(name="registry.register_contract")
    async def register_contract(
        self, key: str, request: RegisterContractRequest
    ) -> ContractRegistrationResponse:
        return await self._client.register_contract(request, key)

    @activity.defn(name="registry.register_equity")
    async def register_equity(
        self, key: str, request: RegisterEquityRequest
    ) -> EquityRegistrationResponse:
        return await self._client.register_equity(request, key)

    @activity.defn(name="registry.apply_for_poc")
    async def apply_for_poc(
        self, key: str, request: PocApplicationRequest
    ) -> PocApplicationResponse:
        return await self._client.apply_for_poc(request, key)

    @activity.defn(name="registry.cancel_poc_application")
    async def cancel_poc_application(
        self, key: str, application_number: str, request: PocCancellationRequest
    ) -> PocCancellationResponse:
        return await self._client.cancel_poc_application(application_number, request, key)

    @activity.defn(name="registry.submit_lifecycle_report")
    async def submit_lifecycle_report(
        self, key: str, request: LifecycleReportRequest
    ) -> ReportReceipt:
        return await self._client.submit_lifecycle_report(request, key)

    @activity.defn(name="registry.submit_annual_report")
    async def submit_annual_report(self, key: str, request: AnnualReportRequest) -> ReportReceipt:
        return await self._client.submit_annual_report(request, key)

    @activity.defn(name="registry.request_evaluation")
    async def request_evaluation(
        self, key: str, request: EvaluationRequest
    ) -> EvaluationRequestReceipt:
        """Ask an evaluation institution, through the registry, to evaluate the achievement."""
        return await self._client.request_evaluation(request, key)

    @activity.defn(name="registry.remind_evaluation")
    async def remind_evaluation(
        self, key: str, request_number: str, request: EvaluationReminder
    ) -> EvaluationReminderReceipt:
        """Remind the institution, through the registry, that its report is overdue."""
        return await self._client.remind_evaluation(request_number, request, key)
