"""The registry and exchange clients against the real sandboxes over HTTP, and the mapping of
HTTP outcomes to Temporal retry behaviour."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
import pytest
import pytest_asyncio
from multidict import CIMultiDict
from temporalio.exceptions import ApplicationError

from activities.exchange_client import ExchangeClient
from activities.http_client import Reply
from activities.http_errors import parse_body, raise_for_status
from activities.registry_client import RegistryClient
from schemas.disclosure import IPAssetKind, TechnologyField
from schemas.exchange_api import (
    CreateListingRequest,
    ListingResponse,
    RejectDealRequest,
    SearchRequest,
    WithdrawListingRequest,
)
from schemas.registry_api import (
    AchievementRegistration,
    AnnualReportRequest,
    LifecycleReportRequest,
    PocApplicationRequest,
    PocCancellationRequest,
    RegisterAchievementRequest,
    RegisterContractRequest,
    RegisterEquityRequest,
)
from schemas.transaction import ContractType, ListingStatus, PricingMethod

if TYPE_CHECKING:
    # Only for annotations: importing it at run time would defeat assertion rewriting.
    from _sandbox_fixtures import SandboxStack


def _key() -> str:
    return str(uuid.uuid4())


def _achievement_id() -> str:
    return f"ach-{uuid.uuid4().hex[:12]}"


def _achievement(
    achievement_id: str, title: str = "Low-power RISC-V SoC"
) -> RegisterAchievementRequest:
    return RegisterAchievementRequest(
        achievement_id=achievement_id,
        title=title,
        institution_code="SJTU",
        field=TechnologyField.INTEGRATED_CIRCUITS,
        trl=5,
        ip_kinds=[IPAssetKind.PATENT, IPAssetKind.IC_LAYOUT],
    )


def _listing(achievement_id: str, publicity_days: int = 0) -> CreateListingRequest:
    return CreateListingRequest(
        achievement_id=achievement_id,
        title="Solid-state electrolyte for fast charging",
        field=TechnologyField.NEW_ENERGY,
        seller_institution="FDU",
        asking_price=Decimal("1200000.00"),
        pricing=PricingMethod.AGREEMENT,
        publicity_days=publicity_days,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def registry(sandbox_stack: SandboxStack) -> AsyncIterator[RegistryClient]:
    client = RegistryClient(sandbox_stack.registry_url, timeout=10.0)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def exchange(sandbox_stack: SandboxStack) -> AsyncIterator[ExchangeClient]:
    client = ExchangeClient(sandbox_stack.exchange_url, timeout=10.0)
    yield client
    await client.aclose()


async def _records(http: httpx.AsyncClient, base_url: str) -> dict[str, Any]:
    response = await http.get(f"{base_url}/sandbox/records")
    response.raise_for_status()
    records: dict[str, Any] = response.json()
    return records


# --- registry -------------------------------------------------------------------------------


async def test_register_achievement_replay_returns_original_without_second_effect(
    registry: RegistryClient, sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    achievement_id = _achievement_id()
    key = _key()
    first = await registry.register_achievement(_achievement(achievement_id), key)
    again = await registry.register_achievement(_achievement(achievement_id), key)

    assert first == again
    assert first.registration_number.startswith(f"REG-{datetime.now(UTC).year}-")
    records = await _records(sandbox_http, sandbox_stack.registry_url)
    assert records["achievements"][achievement_id] == 1


async def test_second_registration_under_new_key_is_rejected_for_good(
    registry: RegistryClient,
) -> None:
    achievement_id = _achievement_id()
    await registry.register_achievement(_achievement(achievement_id), _key())

    with pytest.raises(ApplicationError) as info:
        await registry.register_achievement(_achievement(achievement_id), _key())

    assert info.value.type == "RegistryRejected"
    assert info.value.non_retryable
    assert info.value.details[0]["type"] == "already_registered"
    assert "achievement_id" in info.value.message


async def test_key_reused_with_a_different_body_is_rejected(registry: RegistryClient) -> None:
    key = _key()
    await registry.register_achievement(_achievement(_achievement_id()), key)

    with pytest.raises(ApplicationError) as info:
        await registry.register_achievement(_achievement(_achievement_id()), key)

    assert info.value.type == "RegistryRejected"
    assert info.value.non_retryable
    assert info.value.details[0]["status"] == 422
    assert info.value.details[0]["type"] == "idempotency_key_reused"


async def test_invalid_request_is_rejected_naming_every_bad_field(
    registry: RegistryClient,
) -> None:
    # model_construct skips client-side validation, as a buggy or older caller would.
    bad = RegisterAchievementRequest.model_construct(
        achievement_id=_achievement_id(),
        title="ok title",
        institution_code="X",
        field=TechnologyField.AGRICULTURE,
        trl=12,
        ip_kinds=[],
        synthetic=False,
    )

    with pytest.raises(ApplicationError) as info:
        await registry.register_achievement(bad, _key())

    assert info.value.type == "RegistryRejected"
    assert info.value.non_retryable
    assert sorted(info.value.details[0]["fields"]) == ["institution_code", "trl"]
    assert "trl" in info.value.message and "institution_code" in info.value.message


async def test_injected_outage_is_retryable_and_has_no_effect(
    registry: RegistryClient, sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    await sandbox_http.put(
        f"{sandbox_stack.registry_url}/sandbox/faults",
        json={"error_rate": 1.0, "webhook_delay_ms": 0},
    )
    achievement_id = _achievement_id()
    key = _key()

    with pytest.raises(ApplicationError) as info:
        await registry.register_achievement(_achievement(achievement_id), key)

    assert info.value.type == "RegistryUnavailable"
    assert not info.value.non_retryable
    records = await _records(sandbox_http, sandbox_stack.registry_url)
    assert achievement_id not in records["achievements"]

    # Once the registry is back, the retry with the same key is a first execution.
    await sandbox_http.put(f"{sandbox_stack.registry_url}/sandbox/faults", json={})
    registration = await registry.register_achievement(_achievement(achievement_id), key)
    assert isinstance(registration, AchievementRegistration)


@pytest.mark.parametrize(
    ("contract_type", "eligible"),
    [
        (ContractType.TRANSFER, True),
        (ContractType.LICENCE, True),
        (ContractType.DEVELOPMENT, True),
        (ContractType.CONSULTING, False),
        (ContractType.SERVICE, False),
    ],
)
async def test_contract_registration_verifies_amount_and_tax_eligibility(
    registry: RegistryClient, contract_type: ContractType, eligible: bool
) -> None:
    achievement_id = _achievement_id()
    registration = await registry.register_achievement(_achievement(achievement_id), _key())

    contract = await registry.register_contract(
        RegisterContractRequest(
            achievement_id=achievement_id,
            registration_number=registration.registration_number,
            contract_type=contract_type,
            amount=Decimal("880000.50"),
            buyer="Shanghai Semi Co.",
            seller_institution="SJTU",
            exchange="sstec",
        ),
        _key(),
    )

    assert contract.certificate_number.startswith("TC-")
    assert contract.verified_amount == Decimal("880000.50")
    assert contract.tax_preference_eligible is eligible


async def test_contract_on_unknown_registration_is_rejected(registry: RegistryClient) -> None:
    with pytest.raises(ApplicationError) as info:
        await registry.register_contract(
            RegisterContractRequest(
                achievement_id=_achievement_id(),
                registration_number="REG-1999-000001",
                contract_type=ContractType.TRANSFER,
                amount=Decimal("1.00"),
                buyer="B",
                seller_institution="SJTU",
            ),
            _key(),
        )
    assert info.value.non_retryable
    assert info.value.details[0]["fields"] == ["registration_number"]


async def test_poc_equity_and_reports(
    registry: RegistryClient, sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    achievement_id = _achievement_id()
    today = datetime.now(UTC).date()
    poc = await registry.apply_for_poc(
        PocApplicationRequest(
            achievement_id=achievement_id,
            title="Organoid screening",
            institution_code="FDU",
            trl=3,
            applied_on=today,
        ),
        _key(),
    )
    assert poc.application_number.startswith("POC-")
    assert poc.granted_amount == Decimal("500000.00")
    assert [m.due for m in poc.milestones] == [today + timedelta(days=d) for d in (90, 180, 270)]

    equity = await registry.register_equity(
        RegisterEquityRequest(
            achievement_id=achievement_id,
            company_name="Organoid Bio Ltd",
            credit_code="91310000MA1FL3XX0X",
            equity_share=Decimal("35"),
            valuation=Decimal("10000000.00"),
            state_owned=True,
        ),
        _key(),
    )
    assert equity.equity_certificate.startswith("EQ-")
    assert equity.state_owned_equity is True

    report = await registry.submit_lifecycle_report(
        LifecycleReportRequest(
            achievement_id=achievement_id, final_stage="incubation", summary={"exit": "listed"}
        ),
        _key(),
    )
    annual_key = _key()
    annual_request = AnnualReportRequest(institution_code="FDU", year=2031, report={"n": 3})
    annual = await registry.submit_annual_report(annual_request, annual_key)
    assert await registry.submit_annual_report(annual_request, annual_key) == annual
    assert report.receipt_number.startswith("RPT-")
    assert annual.receipt_number.startswith("ANN-")

    records = await _records(sandbox_http, sandbox_stack.registry_url)
    assert records["poc_applications"][achievement_id] == 1
    assert records["equity"][achievement_id] == 1
    assert records["lifecycle_reports"][achievement_id] == 1
    assert records["annual_reports"]["FDU/2031"] == 1


# --- exchange -------------------------------------------------------------------------------


async def test_search_is_deterministic_and_counts_similar_listings(
    exchange: ExchangeClient,
) -> None:
    request = SearchRequest(field=TechnologyField.NEW_ENERGY, title="Sodium-ion cathode")
    before = await exchange.search("jstec", request)
    assert await exchange.search("jstec", request) == before
    assert len(before.top_matches) <= 3

    await exchange.create_listing("jstec", _listing(_achievement_id()), _key())
    after = await exchange.search("jstec", request)
    assert after.similar_listings == before.similar_listings + 1
    assert after.matching_demands == before.matching_demands


async def test_unknown_exchange_is_rejected(exchange: ExchangeClient) -> None:
    with pytest.raises(ApplicationError) as info:
        await exchange.search(
            "nowhere", SearchRequest(field=TechnologyField.OTHER, title="anything")
        )
    assert info.value.type == "ExchangeRejected"
    assert info.value.non_retryable
    assert info.value.details[0]["type"] == "unknown_exchange"


async def test_create_listing_replay_and_publicity_period(
    exchange: ExchangeClient, sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    achievement_id = _achievement_id()
    key = _key()
    listing = await exchange.create_listing("sstec", _listing(achievement_id, 15), key)
    again = await exchange.create_listing("sstec", _listing(achievement_id, 15), key)

    assert again == listing
    assert listing.listing_id.startswith("SSTEC-L-")
    assert listing.status is ListingStatus.OPEN
    assert listing.publicity_ends_at - listing.listed_at == timedelta(days=15)
    assert await exchange.list_listings("sstec", achievement_id) == [listing]
    records = await _records(sandbox_http, sandbox_stack.exchange_url)
    assert records["listings"][achievement_id] == {"sstec": 1}


async def test_withdraw_twice_is_a_noop(
    exchange: ExchangeClient, sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    achievement_id = _achievement_id()
    listing = await exchange.create_listing("zjtec", _listing(achievement_id), _key())
    reason = WithdrawListingRequest(reason="dealt on another exchange")

    first = await exchange.withdraw_listing("zjtec", listing.listing_id, reason, _key())
    second = await exchange.withdraw_listing("zjtec", listing.listing_id, reason, _key())

    assert first.status is ListingStatus.WITHDRAWN
    assert second == first
    records = await _records(sandbox_http, sandbox_stack.exchange_url)
    assert records["withdrawals"][achievement_id] == {"zjtec": 1}


async def test_withdrawing_a_dealt_listing_is_rejected_for_good(
    exchange: ExchangeClient, sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    listing = await exchange.create_listing("ahtec", _listing(_achievement_id()), _key())
    deal = await sandbox_http.post(
        f"{sandbox_stack.exchange_url}/sandbox/exchanges/ahtec/listings/{listing.listing_id}/deal",
        json={"buyer": "CATL", "contract_type": "transfer", "amount": "1100000.00"},
        headers={"Idempotency-Key": _key()},
    )
    assert deal.status_code == 202

    with pytest.raises(ApplicationError) as info:
        await exchange.withdraw_listing(
            "ahtec", listing.listing_id, WithdrawListingRequest(reason="too late"), _key()
        )

    assert info.value.type == "ExchangeRejected"
    assert info.value.non_retryable
    assert info.value.details[0]["type"] == "listing_dealt"


async def test_rejecting_a_deal_opens_the_listing_and_a_foreign_listing_is_rejected_for_good(
    exchange: ExchangeClient, sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    listing = await exchange.create_listing("jstec", _listing(_achievement_id()), _key())
    deal = await sandbox_http.post(
        f"{sandbox_stack.exchange_url}/sandbox/exchanges/jstec/listings/{listing.listing_id}/deal",
        json={"buyer": "CATL", "contract_type": "transfer", "amount": "1100000.00"},
        headers={"Idempotency-Key": _key()},
    )
    deal_id = deal.json()["event_id"]
    reason = RejectDealRequest(reason="another deal closed first")
    key = _key()

    reopened = await exchange.reject_deal("jstec", listing.listing_id, deal_id, reason, key)
    again = await exchange.reject_deal("jstec", listing.listing_id, deal_id, reason, key)

    assert reopened.status is ListingStatus.OPEN and again == reopened
    with pytest.raises(ApplicationError) as info:
        await exchange.reject_deal("sstec", listing.listing_id, deal_id, reason, _key())
    assert info.value.type == "ExchangeRejected" and info.value.non_retryable
    assert info.value.details[0]["type"] == "listing_not_found"


async def test_exchange_outage_is_retryable(
    exchange: ExchangeClient, sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    await sandbox_http.put(
        f"{sandbox_stack.exchange_url}/sandbox/faults",
        json={"error_rate": 1.0, "webhook_delay_ms": 0},
    )
    achievement_id = _achievement_id()
    with pytest.raises(ApplicationError) as info:
        await exchange.create_listing("sstec", _listing(achievement_id), _key())
    assert info.value.type == "ExchangeUnavailable"
    assert not info.value.non_retryable
    records = await _records(sandbox_http, sandbox_stack.exchange_url)
    assert achievement_id not in records["listings"]


async def test_network_errors_propagate_for_temporal_to_retry() -> None:
    # A port nobody listens on: the connection is refused, and that is not an ApplicationError.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = RegistryClient(f"http://127.0.0.1:{port}", timeout=2.0)
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            await client.register_achievement(_achievement(_achievement_id()), _key())
    finally:
        await client.aclose()


# --- the mapping itself, for answers the sandboxes never give ---------------------------------


def _response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, CIMultiDict(headers or {}), body, "")


def test_same_key_replay_answered_with_409_is_success() -> None:
    body = b'{"registration_number": "REG-2026-000001", "registered_at": "2026-01-01T00:00:00Z"}'
    response = _response(409, body, {"Idempotent-Replayed": "true"})
    raise_for_status("registry", response)
    parsed = parse_body("registry", response, AchievementRegistration)
    assert parsed.registration_number == "REG-2026-000001"


def test_plain_409_is_a_rejection() -> None:
    body = b'{"type": "already_registered", "message": "dup", "fields": ["achievement_id"]}'
    with pytest.raises(ApplicationError) as info:
        raise_for_status("registry", _response(409, body))
    assert info.value.type == "RegistryRejected"
    assert info.value.non_retryable


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(status: int) -> None:
    with pytest.raises(ApplicationError) as info:
        raise_for_status("exchange", _response(status, b"<html>bad gateway</html>"))
    assert info.value.type == "ExchangeUnavailable"
    assert not info.value.non_retryable


def test_retry_after_is_honoured() -> None:
    with pytest.raises(ApplicationError) as info:
        raise_for_status("exchange", _response(429, b"", {"Retry-After": "7"}))
    assert info.value.next_retry_delay == timedelta(seconds=7)


def test_malformed_success_body_is_a_protocol_error() -> None:
    response = _response(200, b'{"listing_id": 42}')
    with pytest.raises(ApplicationError) as info:
        parse_body("exchange", response, ListingResponse)
    assert info.value.type == "ExchangeProtocolError"
    assert info.value.non_retryable
    assert "listing_id" in info.value.message


async def test_a_poc_application_follows_the_schedule_and_is_cancelled_once(
    registry: RegistryClient, sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    achievement_id = _achievement_id()
    applied_at = datetime.now(UTC)
    offsets = [timedelta(seconds=20), timedelta(seconds=40)]
    poc = await registry.apply_for_poc(
        PocApplicationRequest(
            achievement_id=achievement_id,
            title="Organoid screening",
            institution_code="FDU",
            trl=3,
            applied_on=applied_at.date(),
            applied_at=applied_at,
            milestone_offsets=offsets,
        ),
        _key(),
    )
    # The applicant's schedule (the policy's), to the second.
    assert [m.due_at for m in poc.milestones] == [applied_at + o for o in offsets]

    cancel = PocCancellationRequest(achievement_id=achievement_id, reason="mandatory listing")
    key = _key()
    first = await registry.cancel_poc_application(poc.application_number, cancel, key)
    again = await registry.cancel_poc_application(poc.application_number, cancel, key)
    other_key = await registry.cancel_poc_application(poc.application_number, cancel, _key())
    assert first.application_number == poc.application_number
    assert first.granted_amount == poc.granted_amount
    assert again == first and other_key == first  # cancelled once, however often it is asked
    records = (await sandbox_http.get(f"{sandbox_stack.registry_url}/sandbox/records")).json()
    assert records["poc_cancellations"] == {achievement_id: 1}

    # Another achievement's application, or none, is refused for good.
    with pytest.raises(ApplicationError) as info:
        await registry.cancel_poc_application(
            poc.application_number,
            cancel.model_copy(update={"achievement_id": _achievement_id()}),
            _key(),
        )
    assert info.value.non_retryable
