"""The sandboxes over real HTTP: idempotency, ApiError bodies, faults and webhook delivery."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

from schemas.exchange_api import WebhookType

if TYPE_CHECKING:
    # Only for annotations: importing it at run time would defeat assertion rewriting.
    from _sandbox_fixtures import SandboxStack


def _key() -> str:
    return str(uuid.uuid4())


def _achievement(achievement_id: str) -> dict[str, Any]:
    return {
        "achievement_id": achievement_id,
        "title": "Drought-tolerant rice variety",
        "institution_code": "SAAS",
        "field": "agriculture",
        "trl": 6,
        "ip_kinds": ["plant_variety"],
    }


def _listing(achievement_id: str, publicity_days: int = 0) -> dict[str, Any]:
    return {
        "achievement_id": achievement_id,
        "title": "Graphene thermal film",
        "field": "advanced_materials",
        "seller_institution": "SHU",
        "asking_price": "300000.00",
        "pricing": "bidding",
        "publicity_days": publicity_days,
    }


async def _create_listing(
    http: httpx.AsyncClient, stack: SandboxStack, exchange: str = "sstec"
) -> dict[str, Any]:
    response = await http.post(
        f"{stack.exchange_url}/v1/exchanges/{exchange}/listings",
        json=_listing(f"ach-{uuid.uuid4().hex[:12]}"),
        headers={"Idempotency-Key": _key()},
    )
    assert response.status_code == 201, response.text
    listing: dict[str, Any] = response.json()
    return listing


def _trigger_url(stack: SandboxStack, listing: dict[str, Any], action: str) -> str:
    return (
        f"{stack.exchange_url}/sandbox/exchanges/{listing['exchange']}/listings/"
        f"{listing['listing_id']}/{action}"
    )


async def _trigger(
    http: httpx.AsyncClient,
    stack: SandboxStack,
    listing: dict[str, Any],
    action: str,
    body: dict[str, Any] | None = None,
) -> str:
    response = await http.post(
        _trigger_url(stack, listing, action), json=body, headers={"Idempotency-Key": _key()}
    )
    assert response.status_code == 202, response.text
    event_id: str = response.json()["event_id"]
    return event_id


async def _outbox(http: httpx.AsyncClient, stack: SandboxStack, event_id: str) -> dict[str, Any]:
    response = await http.get(f"{stack.exchange_url}/sandbox/webhooks")
    [row] = [r for r in response.json() if r["event_id"] == event_id]
    return dict(row)


async def _wait_outbox(
    http: httpx.AsyncClient, stack: SandboxStack, event_id: str, status: str
) -> dict[str, Any]:
    for _ in range(200):
        row = await _outbox(http, stack, event_id)
        if row["status"] == status:
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"{event_id} never became {status}: {row}")


# --- idempotency and errors -----------------------------------------------------------------


async def test_missing_idempotency_key_is_a_400_api_error(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    response = await sandbox_http.post(
        f"{sandbox_stack.registry_url}/v1/achievements", json=_achievement("ach-nokey")
    )
    assert response.status_code == 400
    assert response.json()["type"] == "idempotency_key_required"
    records = (await sandbox_http.get(f"{sandbox_stack.registry_url}/sandbox/records")).json()
    assert "ach-nokey" not in records["achievements"]


async def test_replay_is_marked_and_byte_for_byte_the_original(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    url = f"{sandbox_stack.registry_url}/v1/achievements"
    body = _achievement(f"ach-{uuid.uuid4().hex[:12]}")
    headers = {"Idempotency-Key": _key()}

    first = await sandbox_http.post(url, json=body, headers=headers)
    # Same content, different key order: still the same request.
    second = await sandbox_http.post(url, json=dict(reversed(body.items())), headers=headers)

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()


async def test_concurrent_requests_with_one_key_have_one_effect(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    achievement_id = f"ach-{uuid.uuid4().hex[:12]}"
    headers = {"Idempotency-Key": _key()}
    responses = await asyncio.gather(
        *(
            sandbox_http.post(
                f"{sandbox_stack.registry_url}/v1/achievements",
                json=_achievement(achievement_id),
                headers=headers,
            )
            for _ in range(8)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["registration_number"] for r in responses}) == 1
    records = (await sandbox_http.get(f"{sandbox_stack.registry_url}/sandbox/records")).json()
    assert records["achievements"][achievement_id] == 1


async def test_validation_errors_name_every_bad_field_as_a_dotted_path(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    body = _achievement("ok-id") | {"trl": 0, "ip_kinds": ["patent", "poem"], "colour": "red"}
    response = await sandbox_http.post(
        f"{sandbox_stack.registry_url}/v1/achievements",
        json=body,
        headers={"Idempotency-Key": _key()},
    )
    assert response.status_code == 422
    error = response.json()
    assert error["type"] == "validation_error"
    assert sorted(error["fields"]) == ["colour", "ip_kinds.1", "trl"]


async def test_money_with_fractions_of_a_cent_is_refused(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    body = _listing("ach-cents") | {"asking_price": "10.005"}
    response = await sandbox_http.post(
        f"{sandbox_stack.exchange_url}/v1/exchanges/sstec/listings",
        json=body,
        headers={"Idempotency-Key": _key()},
    )
    assert response.status_code == 422
    assert response.json()["fields"] == ["asking_price"]


def _equity(achievement_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "achievement_id": achievement_id,
        "company_name": "Synthetic Spin-off Co (demo)",
        "credit_code": "91310000MA1FL8XQ3X",
        "equity_share": "20.00",
        "valuation": "8000000.00",
        "state_owned": True,
    } | changes


async def test_the_equity_registration_follows_ownership(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    url = f"{sandbox_stack.registry_url}/v1/equity"

    async def register(**changes: Any) -> httpx.Response:
        body = _equity(f"ach-{uuid.uuid4().hex[:12]}", **changes)
        return await sandbox_http.post(url, json=body, headers={"Idempotency-Key": _key()})

    # Before ownership was modelled: the institution's alone, state-owned as it is.
    alone = await register()
    assert alone.status_code == 201, alone.text
    assert alone.json()["state_owned_equity"] is True
    assert alone.json()["team_equity_share"] is None
    # Jointly owned: the team's part is registered for it; the institution's stays state-owned.
    joint = await register(team_equity_share="14.00")
    assert joint.status_code == 201, joint.text
    assert joint.json()["team_equity_share"] == "14.00"
    assert joint.json()["state_owned_equity"] is True
    # Researcher-owned: all the team's, so nothing is state-owned.
    team = await register(team_equity_share="20.00")
    assert team.json()["state_owned_equity"] is False
    # More than the whole is refused, naming the field.
    too_much = await register(team_equity_share="20.01")
    assert too_much.status_code == 422
    assert too_much.json()["fields"] == ["team_equity_share"]


async def test_unknown_achievement_is_a_404_api_error(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    response = await sandbox_http.get(f"{sandbox_stack.registry_url}/v1/achievements/nope-1")
    assert response.status_code == 404
    assert response.json()["type"] == "not_found"


async def test_registered_achievement_can_be_read_back(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    achievement_id = f"ach-{uuid.uuid4().hex[:12]}"
    created = await sandbox_http.post(
        f"{sandbox_stack.registry_url}/v1/achievements",
        json=_achievement(achievement_id),
        headers={"Idempotency-Key": _key()},
    )
    read = await sandbox_http.get(f"{sandbox_stack.registry_url}/v1/achievements/{achievement_id}")
    assert read.status_code == 200
    assert read.json()["registration_number"] == created.json()["registration_number"]


async def test_faults_are_readable_and_latency_applies_to_v1_only(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    url = f"{sandbox_stack.registry_url}/sandbox/faults"
    put = await sandbox_http.put(url, json={"latency_ms": 300, "webhook_delay_ms": 0})
    assert put.status_code == 200
    assert (await sandbox_http.get(url)).json()["latency_ms"] == 300

    loop = asyncio.get_running_loop()
    started = loop.time()
    await sandbox_http.get(f"{sandbox_stack.registry_url}/v1/achievements/nope-2")
    assert loop.time() - started >= 0.3
    started = loop.time()
    await sandbox_http.get(f"{sandbox_stack.registry_url}/sandbox/records")
    assert loop.time() - started < 0.3


async def test_invalid_faults_are_refused(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    response = await sandbox_http.put(
        f"{sandbox_stack.exchange_url}/sandbox/faults", json={"error_rate": 2}
    )
    assert response.status_code == 422
    assert response.json()["fields"] == ["error_rate"]


# --- listings and test-mode triggers --------------------------------------------------------


async def test_deal_rules(sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient) -> None:
    listing = await _create_listing(sandbox_http, sandbox_stack)
    payment = {"instalment": 1, "amount": "100000.00", "costs": "2000.00"}
    early = await sandbox_http.post(
        _trigger_url(sandbox_stack, listing, "payments"),
        json=payment,
        headers={"Idempotency-Key": _key()},
    )
    assert early.status_code == 409
    assert early.json()["type"] == "listing_not_dealt"

    deal = {"buyer": "Baosteel", "contract_type": "licence", "amount": "280000.00"}
    await _trigger(sandbox_http, sandbox_stack, listing, "deal", deal)
    second = await sandbox_http.post(
        _trigger_url(sandbox_stack, listing, "deal"),
        json=deal,
        headers={"Idempotency-Key": _key()},
    )
    assert second.status_code == 409
    assert second.json()["type"] == "listing_dealt"

    beyond = await sandbox_http.post(
        _trigger_url(sandbox_stack, listing, "payments"),
        json=payment | {"instalment": 2},
        headers={"Idempotency-Key": _key()},
    )
    assert beyond.status_code == 422
    assert beyond.json()["fields"] == ["instalment"]
    await _trigger(sandbox_http, sandbox_stack, listing, "payments", payment)


async def test_trigger_replay_returns_same_event_and_enqueues_once(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    listing = await _create_listing(sandbox_http, sandbox_stack)
    bid = {"bidder": "Huawei", "amount": "310000.00"}
    headers = {"Idempotency-Key": _key()}
    first = await sandbox_http.post(
        _trigger_url(sandbox_stack, listing, "bids"), json=bid, headers=headers
    )
    again = await sandbox_http.post(
        _trigger_url(sandbox_stack, listing, "bids"), json=bid, headers=headers
    )
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    rows = (
        await sandbox_http.get(
            f"{sandbox_stack.exchange_url}/sandbox/webhooks",
            params={"listing_id": listing["listing_id"]},
        )
    ).json()
    assert [r["event_id"] for r in rows] == [first.json()["event_id"]]


async def test_expired_listing_gets_a_webhook_and_withdraws_as_noop(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    listing = await _create_listing(sandbox_http, sandbox_stack, "jstec")
    event_id = await _trigger(sandbox_http, sandbox_stack, listing, "expire")
    receiver = sandbox_stack.receiver
    await receiver.wait_for(lambda: bool(receiver.of(event_id)))
    assert receiver.of(event_id)[0].event.type is WebhookType.LISTING_EXPIRED

    withdrawn = await sandbox_http.post(
        f"{sandbox_stack.exchange_url}/v1/exchanges/jstec/listings/{listing['listing_id']}"
        "/withdraw",
        json={"reason": "no longer needed"},
        headers={"Idempotency-Key": _key()},
    )
    assert withdrawn.status_code == 200
    assert withdrawn.json()["status"] == "expired"


# --- webhook delivery -----------------------------------------------------------------------


async def test_webhook_is_delivered_signed_with_exact_money(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    receiver = sandbox_stack.receiver
    rejected_before = receiver.rejected
    listing = await _create_listing(sandbox_http, sandbox_stack)
    await _trigger(
        sandbox_http,
        sandbox_stack,
        listing,
        "deal",
        {"buyer": "SMIC", "contract_type": "transfer", "amount": "999999.99", "instalments": 3},
    )
    event_id = await _trigger(
        sandbox_http,
        sandbox_stack,
        listing,
        "payments",
        {"instalment": 1, "amount": "333333.33", "costs": "0.01"},
    )

    await receiver.wait_for(lambda: bool(receiver.of(event_id)))
    [delivered] = receiver.of(event_id)
    assert delivered.webhook_id == event_id
    assert delivered.event.listing_id == listing["listing_id"]
    assert delivered.event.payment is not None
    assert delivered.event.payment.amount == Decimal("333333.33")
    assert delivered.event.payment.costs == Decimal("0.01")
    assert receiver.rejected == rejected_before  # every signature verified
    row = await _wait_outbox(sandbox_http, sandbox_stack, event_id, "delivered")
    assert row["attempts"] == 1


async def test_duplicate_rate_sends_each_webhook_twice(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    await sandbox_http.put(
        f"{sandbox_stack.exchange_url}/sandbox/faults",
        json={"webhook_duplicate_rate": 1.0, "webhook_delay_ms": 0},
    )
    listing = await _create_listing(sandbox_http, sandbox_stack)
    event_id = await _trigger(
        sandbox_http, sandbox_stack, listing, "bids", {"bidder": "ZTE", "amount": "1.00"}
    )
    receiver = sandbox_stack.receiver
    await receiver.wait_for(lambda: len(receiver.of(event_id)) == 2)
    await _wait_outbox(sandbox_http, sandbox_stack, event_id, "delivered")
    await asyncio.sleep(0.3)
    assert len(receiver.of(event_id)) == 2  # sent twice, then settled: no third copy


async def test_delivery_retries_while_receiver_answers_503(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    receiver = sandbox_stack.receiver
    receiver.unavailable_for = 2
    answered_before = receiver.answered_503
    listing = await _create_listing(sandbox_http, sandbox_stack)
    event_id = await _trigger(
        sandbox_http, sandbox_stack, listing, "bids", {"bidder": "BYD", "amount": "5.00"}
    )

    await receiver.wait_for(lambda: bool(receiver.of(event_id)), within=15)
    assert receiver.answered_503 - answered_before == 2
    row = await _wait_outbox(sandbox_http, sandbox_stack, event_id, "delivered")
    assert row["attempts"] == 3


async def test_delivery_survives_the_receiver_being_down(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    await sandbox_stack.stop_receiver()
    listing = await _create_listing(sandbox_http, sandbox_stack)
    event_id = await _trigger(
        sandbox_http, sandbox_stack, listing, "bids", {"bidder": "NIO", "amount": "7.00"}
    )
    for _ in range(100):
        if (await _outbox(sandbox_http, sandbox_stack, event_id))["attempts"] >= 2:
            break
        await asyncio.sleep(0.05)
    row = await _outbox(sandbox_http, sandbox_stack, event_id)
    assert row["status"] == "pending"
    assert row["attempts"] >= 2

    await sandbox_stack.start_receiver()
    receiver = sandbox_stack.receiver
    await receiver.wait_for(lambda: bool(receiver.of(event_id)), within=15)
    await _wait_outbox(sandbox_http, sandbox_stack, event_id, "delivered")


async def test_dropped_webhook_is_retried_later(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    faults_url = f"{sandbox_stack.exchange_url}/sandbox/faults"
    await sandbox_http.put(faults_url, json={"webhook_drop_rate": 1.0, "webhook_delay_ms": 0})
    listing = await _create_listing(sandbox_http, sandbox_stack)
    event_id = await _trigger(
        sandbox_http, sandbox_stack, listing, "bids", {"bidder": "Geely", "amount": "9.00"}
    )
    await asyncio.sleep(0.8)
    receiver = sandbox_stack.receiver
    assert receiver.of(event_id) == []
    assert (await _outbox(sandbox_http, sandbox_stack, event_id))["attempts"] >= 1

    await sandbox_http.put(faults_url, json={"webhook_delay_ms": 0})
    await receiver.wait_for(lambda: bool(receiver.of(event_id)), within=15)


async def test_refused_webhook_is_kept_as_failed(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    sandbox_stack.receiver.refuse_for = 1
    before = (await sandbox_http.get(f"{sandbox_stack.exchange_url}/sandbox/records")).json()
    listing = await _create_listing(sandbox_http, sandbox_stack)
    event_id = await _trigger(
        sandbox_http, sandbox_stack, listing, "bids", {"bidder": "Xpeng", "amount": "3.00"}
    )

    row = await _wait_outbox(sandbox_http, sandbox_stack, event_id, "failed")
    assert row["last_status"] == 400
    assert row["attempts"] == 1
    after = (await sandbox_http.get(f"{sandbox_stack.exchange_url}/sandbox/records")).json()
    assert after["webhooks"]["failed"] == before["webhooks"]["failed"] + 1


async def test_webhook_delay_is_respected(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    await sandbox_http.put(
        f"{sandbox_stack.exchange_url}/sandbox/faults", json={"webhook_delay_ms": 700}
    )
    listing = await _create_listing(sandbox_http, sandbox_stack)
    event_id = await _trigger(
        sandbox_http, sandbox_stack, listing, "bids", {"bidder": "Lenovo", "amount": "2.00"}
    )
    await asyncio.sleep(0.4)
    receiver = sandbox_stack.receiver
    assert receiver.of(event_id) == []
    await receiver.wait_for(lambda: bool(receiver.of(event_id)), within=5)


async def test_no_deal_during_the_publicity_period(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    response = await sandbox_http.post(
        f"{sandbox_stack.exchange_url}/v1/exchanges/sstec/listings",
        json=_listing(f"ach-{uuid.uuid4().hex[:12]}", publicity_days=15),
        headers={"Idempotency-Key": _key()},
    )
    listing = response.json()
    deal = {"buyer": "SAIC", "contract_type": "transfer", "amount": "1.00"}
    response = await sandbox_http.post(
        _trigger_url(sandbox_stack, listing, "deal"), json=deal, headers={"Idempotency-Key": _key()}
    )
    assert response.status_code == 409
    assert response.json()["type"] == "publicity_period"


async def test_publicity_ends_at_the_instant_the_seller_gives(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    url = f"{sandbox_stack.exchange_url}/v1/exchanges/sstec/listings"
    body = _listing(f"ach-{uuid.uuid4().hex[:12]}")
    del body["publicity_days"]
    neither = await sandbox_http.post(url, json=body, headers={"Idempotency-Key": _key()})
    assert neither.status_code == 422

    ends = datetime.now(UTC) + timedelta(seconds=1)
    response = await sandbox_http.post(
        url,
        json=body | {"publicity_ends_at": ends.isoformat()},
        headers={"Idempotency-Key": _key()},
    )
    assert response.status_code == 201, response.text
    listing = response.json()
    # Exact, not rounded to whole days (which made a sub-day period no publicity at all).
    assert datetime.fromisoformat(listing["publicity_ends_at"]) == ends
    deal = {"buyer": "SAIC", "contract_type": "transfer", "amount": "1.00"}
    early = await sandbox_http.post(
        _trigger_url(sandbox_stack, listing, "deal"), json=deal, headers={"Idempotency-Key": _key()}
    )
    assert early.status_code == 409 and early.json()["type"] == "publicity_period"
    await asyncio.sleep((ends - datetime.now(UTC)).total_seconds() + 0.05)
    await _trigger(sandbox_http, sandbox_stack, listing, "deal", deal)

    # An end already past (a call retried after an outage) never precedes the listing itself.
    past = datetime.now(UTC) - timedelta(hours=1)
    late = await sandbox_http.post(
        url,
        json=body | {"publicity_ends_at": past.isoformat()},
        headers={"Idempotency-Key": _key()},
    )
    assert late.json()["publicity_ends_at"] == late.json()["listed_at"]


async def test_a_rejected_deal_opens_the_listing_again(
    sandbox_stack: SandboxStack, sandbox_http: httpx.AsyncClient
) -> None:
    listing = await _create_listing(sandbox_http, sandbox_stack)
    deal = {"buyer": "Baosteel", "contract_type": "licence", "amount": "280000.00"}
    deal_id = await _trigger(sandbox_http, sandbox_stack, listing, "deal", deal)
    base = f"{sandbox_stack.exchange_url}/v1/exchanges/sstec/listings/{listing['listing_id']}"
    reason = {"reason": "publicity period not over"}
    headers = {"Idempotency-Key": _key()}
    rejected = await sandbox_http.post(
        f"{base}/deals/{deal_id}/reject", json=reason, headers=headers
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "open"
    again = await sandbox_http.post(f"{base}/deals/{deal_id}/reject", json=reason, headers=headers)
    assert again.json() == rejected.json() and again.headers["Idempotent-Replayed"] == "true"
    # A deal that does not stand (already rejected) changes nothing: the answer is the listing.
    other_key = await sandbox_http.post(
        f"{base}/deals/{deal_id}/reject", json=reason, headers={"Idempotency-Key": _key()}
    )
    assert other_key.status_code == 200 and other_key.json()["status"] == "open"

    # Open again: the next deal is taken, and a rejection of the old one leaves it dealt.
    second = await _trigger(sandbox_http, sandbox_stack, listing, "deal", deal)
    stale = await sandbox_http.post(
        f"{base}/deals/{deal_id}/reject", json=reason, headers={"Idempotency-Key": _key()}
    )
    assert stale.json()["status"] == "dealt"
    assert second != deal_id
    elsewhere = await sandbox_http.post(
        f"{sandbox_stack.exchange_url}/v1/exchanges/jstec/listings/{listing['listing_id']}"
        f"/deals/{second}/reject",
        json=reason,
        headers={"Idempotency-Key": _key()},
    )
    assert elsewhere.status_code == 404 and elsewhere.json()["type"] == "listing_not_found"
    missing_key = await sandbox_http.post(f"{base}/deals/{second}/reject", json=reason)
    assert missing_key.status_code == 400
