"""Jurisdictions: statutory floors fixed in code, not configuration.

A policy file can raise the research team's share; only a release of this table can change
what the law requires. Adding a jurisdiction is a code change, reviewed like one.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType


@dataclass(frozen=True)
class Jurisdiction:
    code: str
    name: str
    law: str
    # The research team's minimum share of each payment's net income.
    team_reward_floor: Decimal
    # The research team's minimum share of the equity an achievement is invested as (what the
    # institution holds of it; plan items 2 and 3).
    team_equity_floor: Decimal
    # IANA zone of reporting years and business dates.
    time_zone: str


SHANGHAI = Jurisdiction(
    code="CN-SH",
    name="Shanghai",
    law="Shanghai Regulations on Promoting the Transformation of Scientific and "
    "Technological Achievements",
    team_reward_floor=Decimal("0.70"),
    # Art. 40: no less than 70 per cent of the shares or capital contribution formed.
    team_equity_floor=Decimal("0.70"),
    time_zone="Asia/Shanghai",
)
NATIONAL = Jurisdiction(
    code="CN",
    name="PRC national law",
    law="PRC Law on Promoting the Transformation of Scientific and Technological Achievements",
    team_reward_floor=Decimal("0.50"),
    # Art. 45: no less than 50 per cent of the shares or capital contribution formed.
    team_equity_floor=Decimal("0.50"),
    time_zone="Asia/Shanghai",
)

JURISDICTIONS = MappingProxyType({j.code: j for j in (SHANGHAI, NATIONAL)})
DEFAULT_JURISDICTION = SHANGHAI.code
