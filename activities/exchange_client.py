"""HTTP client of a technology exchange; errors map to Temporal retry behaviour."""

from __future__ import annotations

from urllib.parse import quote

from pydantic import RootModel

from activities.http_client import JsonHttp
from activities.http_errors import IDEMPOTENCY_HEADER, checked
from schemas.evaluation import TechnologySearchResult
from schemas.exchange_api import (
    CreateListingRequest,
    ListingResponse,
    RejectDealRequest,
    SearchRequest,
    WithdrawListingRequest,
)

SYSTEM = "exchange"


class _Listings(RootModel[list[ListingResponse]]):
    pass


def _seg(value: str) -> str:
    # Path segments come from workflow data: never let one change the URL's shape.
    return quote(value, safe="")


class ExchangeClient:
    """Serves every exchange of the network through one base URL, one pool per worker."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self._http = JsonHttp(base_url, timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def search(self, exchange: str, req: SearchRequest) -> TechnologySearchResult:
        # Read-only, so no idempotency key: a retry simply asks again.
        response = await self._http.post(f"/v1/exchanges/{_seg(exchange)}/search", req)
        return checked(SYSTEM, response, TechnologySearchResult)

    async def create_listing(
        self, exchange: str, req: CreateListingRequest, idempotency_key: str
    ) -> ListingResponse:
        response = await self._http.post(
            f"/v1/exchanges/{_seg(exchange)}/listings",
            req,
            headers={IDEMPOTENCY_HEADER: idempotency_key},
        )
        return checked(SYSTEM, response, ListingResponse)

    async def withdraw_listing(
        self,
        exchange: str,
        listing_id: str,
        req: WithdrawListingRequest,
        idempotency_key: str,
    ) -> ListingResponse:
        """Withdrawing twice is a no-op; a dealt listing gives a non-retryable 'listing_dealt'."""
        response = await self._http.post(
            f"/v1/exchanges/{_seg(exchange)}/listings/{_seg(listing_id)}/withdraw",
            req,
            headers={IDEMPOTENCY_HEADER: idempotency_key},
        )
        return checked(SYSTEM, response, ListingResponse)

    async def reject_deal(
        self,
        exchange: str,
        listing_id: str,
        deal_id: str,
        req: RejectDealRequest,
        idempotency_key: str,
    ) -> ListingResponse:
        """Refuse a deal the exchange took; the answer is the listing as the exchange now has
        it (open again, or as it was when that deal does not stand on it)."""
        response = await self._http.post(
            f"/v1/exchanges/{_seg(exchange)}/listings/{_seg(listing_id)}"
            f"/deals/{_seg(deal_id)}/reject",
            req,
            headers={IDEMPOTENCY_HEADER: idempotency_key},
        )
        return checked(SYSTEM, response, ListingResponse)

    async def list_listings(
        self, exchange: str, achievement_id: str | None = None
    ) -> list[ListingResponse]:
        params = {"achievement_id": achievement_id} if achievement_id is not None else None
        response = await self._http.get(f"/v1/exchanges/{_seg(exchange)}/listings", params=params)
        return checked(SYSTEM, response, _Listings).root
