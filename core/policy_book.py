"""The policy book: versioned transformation policies per institution.

A disclosure starts with the newest version for its institution (or the default), and the
workflow keeps that version for life. Operators publish new versions in a JSON file
(ACHIEVEMENTS_POLICY_FILE): a list of Policy objects. A file that breaks a rule (a rate below
the jurisdiction's statutory floor, an unknown field...) stops the start with one PolicyFileError
naming the file, the entry and the field; no entry of a bad file is ever used.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

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
    # Milestones due within a minute, so the fund's reports and the overdue path show live.
    poc_milestone_offsets=(timedelta(seconds=20), timedelta(seconds=40), timedelta(seconds=60)),
)


class PolicyFileError(ValueError):
    """ACHIEVEMENTS_POLICY_FILE cannot be used; the message is one line, fit for a CLI."""


def _entry_label(index: int, entry: object) -> str:
    if isinstance(entry, dict):
        code, version = entry.get("institution_code", "?"), entry.get("version", "?")
        return f"entry {index} ({code}/{version})"
    return f"entry {index}"


def _one_line(err: ValidationError) -> str:
    """pydantic's errors as 'field: reason; ...', without its multi-line layout."""
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        reason = e["msg"].removeprefix("Value error, ")
        parts.append(reason if not field or reason.startswith(field) else f"{field}: {reason}")
    return "; ".join(parts)


def read_policy_file(path: Path) -> list[Policy]:
    """Every entry of the file, validated; the first bad entry raises PolicyFileError."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise PolicyFileError(f"policy file {path}: cannot read: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PolicyFileError(f"policy file {path}: not JSON: {err}") from None
    if not isinstance(raw, list):
        raise PolicyFileError(f"policy file {path}: must be a JSON list of policies")
    policies = []
    for index, entry in enumerate(raw):
        try:
            policies.append(Policy.model_validate(entry))
        except ValidationError as err:
            label = _entry_label(index, entry)
            raise PolicyFileError(f"policy file {path}: {label}: {_one_line(err)}") from None
    return policies


class PolicyBook:
    def __init__(self, policies: list[Policy]) -> None:
        self._by_institution: dict[str, list[Policy]] = {}
        for policy in policies:
            self._by_institution.setdefault(policy.institution_code, []).append(policy)

    @classmethod
    def load(cls, path: Path | None = None) -> PolicyBook:
        """Raises PolicyFileError: call once at start, before serving."""
        policies = [DEFAULT_POLICY, DEMO_POLICY]
        if path is not None:
            policies += read_policy_file(path)
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
