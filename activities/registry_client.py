"""HTTP client of the S&T achievement registry; errors map to Temporal retry behaviour."""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from activities.http_client import JsonHttp
from activities.http_errors import IDEMPOTENCY_HEADER, checked
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

M = TypeVar("M", bound=BaseModel)

SYSTEM = "registry"


class RegistryClient:
    """One shared connection pool per worker; every mutation carries an idempotency key."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self._http = JsonHttp(base_url, timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: BaseModel, idempotency_key: str, model: type[M]) -> M:
        response = await self._http.post(
            path,
            body,
            headers={IDEMPOTENCY_HEADER: idempotency_key},
        )
        return checked(SYSTEM, response, model)

    async def register_achievement(
        self, req: RegisterAchievementRequest, idempotency_key: str
    ) -> AchievementRegistration:
        return await self._post("/v1/achievements", req, idempotency_key, AchievementRegistration)

    async def register_contract(
        self, req: RegisterContractRequest, idempotency_key: str
    ) -> ContractRegistrationResponse:
        return await self._post("/v1/contracts", req, idempotency_key, ContractRegistrationResponse)

    async def register_equity(
        self, req: RegisterEquityRequest, idempotency_key: str
    ) -> EquityRegistrationResponse:
        return await self._post("/v1/equity", req, idempotency_key, EquityRegistrationResponse)

    async def apply_for_poc(
        self, req: PocApplicationRequest, idempotency_key: str
    ) -> PocApplicationResponse:
        return await self._post(
            "/v1/poc-applications", req, idempotency_key, PocApplicationResponse
        )

    async def cancel_poc_application(
        self, application_number: str, req: PocCancellationRequest, idempotency_key: str
    ) -> PocCancellationResponse:
        path = f"/v1/poc-applications/{quote(application_number, safe='')}/cancellation"
        return await self._post(path, req, idempotency_key, PocCancellationResponse)

    async def submit_lifecycle_report(
        self, req: LifecycleReportRequest, idempotency_key: str
    ) -> ReportReceipt:
        return await self._post("/v1/lifecycle-reports", req, idempotency_key, ReportReceipt)

    async def submit_annual_report(
        self, req: AnnualReportRequest, idempotency_key: str
    ) -> ReportReceipt:
        return await self._post("/v1/annual-reports", req, idempotency_key, ReportReceipt)

    async def request_evaluation(
        self, req: EvaluationRequest, idempotency_key: str
    ) -> EvaluationRequestReceipt:
        return await self._post(
            "/v1/evaluation-requests", req, idempotency_key, EvaluationRequestReceipt
        )

    async def remind_evaluation(
        self, request_number: str, req: EvaluationReminder, idempotency_key: str
    ) -> EvaluationReminderReceipt:
        path = f"/v1/evaluation-requests/{quote(request_number, safe='')}/reminders"
        return await self._post(path, req, idempotency_key, EvaluationReminderReceipt)
