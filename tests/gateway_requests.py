"""Request bodies the tests send to the gateway, as an institution's system would."""

from __future__ import annotations

from typing import Any

PANEL = ["expert-a", "expert-b", "expert-c"]


def disclosure_request(
    achievement_id: str, field: str = "integrated_circuits", **disclosure: Any
) -> dict[str, Any]:
    """A valid POST /achievements body (SYN- institution: the accelerated demo policy)."""
    return {
        "disclosure": {
            "achievement_id": achievement_id,
            "title": "Low-power neural accelerator",
            "summary": "A confidential summary of the invention, never logged.",
            "institution": {
                "code": "SYN-UNI",
                "name": "Synthetic University",
                "kind": "university",
                "state_owned": True,
            },
            "inventors": [{"name": "Li", "share": "60"}, {"name": "Wang", "share": "40"}],
            "field": field,
            "trl": 6,
            "ip_assets": [{"kind": "patent", "number": "CN123", "status": "granted"}],
            "funding": [{"kind": "self"}],
            "ownership": {"kind": "institution"},
            "confidentiality": "internal",
            "intended_modes": ["transfer"],
            "synthetic": True,
            **disclosure,
        },
        "reviewers": PANEL,
        "exchanges": ["sstec"],
        "asking_price": "500000.00",
        "pricing": "agreement",
    }
