"""The policy book: versioned transformation policies per institution.

A disclosure starts with the newest version for its institution (or the default), and the
workflow keeps that version for life. Operators publish new versions in a JSON file
(ACHIEVEMENTS_POLICY_FILE): a list of Policy objects.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from pydantic import TypeAdapter

from schemas.policy import DEFAULT_POLICY, Policy

# Synthetic institutions (codes starting SYN-) run the demo on accelerated clocks, so a
# multi-month lifecycle completes in a minute on a real server. Clearly not a real policy.
SYNTHETIC_PREFIX = "SYN-"
DEMO_POLICY = Policy(
    institution_code=f"{SYNTHETIC_PREFIX}*",
    version="demo-accelerated.1",
    review_sla=timedelta(seconds=30),
    review_escalation_grace=timedelta(seconds=30),
    publicity_period=timedelta(seconds=3),
    payment_grace=timedelta(minutes=5),
)


class PolicyBook:
    def __init__(self, policies: list[Policy]) -> None:
        self._by_institution: dict[str, list[Policy]] = {}
        for policy in policies:
            self._by_institution.setdefault(policy.institution_code, []).append(policy)

    @classmethod
    def load(cls, path: Path | None = None) -> PolicyBook:
        policies = [DEFAULT_POLICY, DEMO_POLICY]
        if path is not None:
            raw = json.loads(path.read_text(encoding="utf-8"))
            policies += TypeAdapter(list[Policy]).validate_python(raw)
        return cls(policies)

    def current(self, institution_code: str) -> Policy:
        """The newest version for the institution; later entries in the book are newer."""
        for key in (institution_code, self._wildcard(institution_code), "*"):
            if key in self._by_institution:
                return self._by_institution[key][-1]
        return DEFAULT_POLICY

    @staticmethod
    def _wildcard(institution_code: str) -> str:
        if institution_code.startswith(SYNTHETIC_PREFIX):
            return f"{SYNTHETIC_PREFIX}*"
        return "*"
