"""Exchange activities: technology search, listings, their withdrawal and refused deals."""

from __future__ import annotations

from temporalio import activity

from activities.exchange_client import ExchangeClient
from schemas.evaluation import TechnologySearchResult
from schemas.exchange_api import (
    CreateListingRequest,
    ListingResponse,
    RejectDealRequest,
    SearchRequest,
    WithdrawListingRequest,
)


class ExchangeActivities:
    def __init__(self, client: ExchangeClient) -> None:
        self._client = client

    @activity.defn(name="exchange.search")
    async def search(self, exchange: str, request: SearchRequest) -> TechnologySearchResult:
        return await self._client.search(exchange, request)

    @activity.defn(name="exchange.create_listing")
    async def create_listing(
        self, key: str, exchange: str, request: CreateListingRequest
    ) -> ListingResponse:
        return await self._client.create_listing(exchange, request, key)

    @activity.defn(name="exchange.withdraw_listing")
    async def withdraw_listing(
        self, key: str, exchange: str, listing_id: str, request: WithdrawListingRequest
    ) -> ListingResponse:
        return await self._client.withdraw_listing(exchange, listing_id, request, key)

    @activity.defn(name="exchange.reject_deal")
    async def reject_deal(
        self, key: str, exchange: str, listing_id: str, deal_id: str, request: RejectDealRequest
    ) -> ListingResponse:
        return await self._client.reject_deal(exchange, listing_id, deal_id, request, key)
