"""Custom search attributes operators filter by in the Temporal UI.

They are eventually consistent, so lists and reports read PostgreSQL instead; these are for
finding and inspecting workflows by hand.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("AchievementStage")
INSTITUTION = SearchAttributeKey.for_keyword("Institution")
TECHNOLOGY_FIELD = SearchAttributeKey.for_keyword("TechnologyField")
TRANSFORMATION_MODES = SearchAttributeKey.for_keyword_list("TransformationModes")
FUNDING_SOURCES = SearchAttributeKey.for_keyword_list("FundingSources")
MANDATORY_LISTING_DUE = SearchAttributeKey.for_datetime("MandatoryListingDue")
# Set while a person must act, unset once the lifecycle can move on by itself: "everything
# that needs a person" is one UI query (`NeedsAttentionSince IS NOT NULL`).
NEEDS_ATTENTION_SINCE = SearchAttributeKey.for_datetime("NeedsAttentionSince")
ATTENTION_REASON = SearchAttributeKey.for_keyword("AttentionReason")

ALL = (
    STAGE,
    INSTITUTION,
    TECHNOLOGY_FIELD,
    TRANSFORMATION_MODES,
    FUNDING_SOURCES,
    MANDATORY_LISTING_DUE,
    NEEDS_ATTENTION_SINCE,
    ATTENTION_REASON,
)


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Type` flags that register them on `temporal server start-dev`."""
    kinds = {
        "KEYWORD": "Keyword",
        "KEYWORD_LIST": "KeywordList",
        "DATETIME": "Datetime",
    }
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags
