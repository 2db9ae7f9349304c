"""The people of the tests, signed in at the session's real local issuer.

Tokens come from the issuer's token endpoint (password grant), exactly as the CLI gets them;
nothing here signs a token itself (tests/test_tokens.py forges hostile ones on purpose).
"""

from __future__ import annotations

from pydantic import SecretStr

from sandboxes.identity_directory import (
    DEMO_PASSWORD,
    Directory,
    User,
    demo_directory,
)
from sandboxes.identity_provider import SyntheticSignIn
from schemas.identity import Role

# The institution of tests/gateway_requests.py and another one whose ids must not leak.
OWN, OTHER = "SYN-UNI", "SYN-OTHER"
PANEL = ["expert-a", "expert-b", "expert-c"]
OFFICER_AND_EXPERT = "both.syn-other"


def _user(username: str, role: Role, institution: str | None = None) -> User:
    return User(
        username=username,
        password=SecretStr(DEMO_PASSWORD),
        subject=username,
        name=f"{username} (synthetic)",
        roles=[role],
        institution=institution,
    )


def test_directory() -> Directory:
    """The demo's people plus the tests' own institutions and panel."""
    demo = demo_directory()
    users = [
        _user("officer.syn-uni", Role.TTO_OFFICER, OWN),
        _user("approver.syn-uni", Role.APPROVER, OWN),
        _user("officer.syn-other", Role.TTO_OFFICER, OTHER),
        _user("approver.syn-other", Role.APPROVER, OTHER),
        *(_user(e, Role.EXPERT) for e in [*PANEL, "expert-x"]),
        # An officer of SYN-OTHER who also reviews for others (two roles, two reaches).
        User(
            username=OFFICER_AND_EXPERT,
            password=SecretStr(DEMO_PASSWORD),
            subject=OFFICER_AND_EXPERT,
            name="Officer and expert (synthetic)",
            roles=[Role.TTO_OFFICER, Role.EXPERT],
            institution=OTHER,
        ),
    ]
    return Directory(users=[*demo.users, *users], clients=demo.clients)


# The tests' personas sign in exactly as the demo's parties do.
Tokens = SyntheticSignIn
