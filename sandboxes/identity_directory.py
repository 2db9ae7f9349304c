"""Who the embedded OIDC issuer knows: people, clients and their service accounts (test mode).

TEST MODE ONLY. `demo_directory()` seeds synthetic people for the demo institutions (SYN-*)
with obviously synthetic, published passwords (`DEMO_PASSWORD`, `DEMO_SCRIPTS_SECRET`). It
exists for `achievements dev`, the demo and the tests; a real deployment points the gateway at
its institutions' identity providers (Keycloak, Azure AD...) and never loads this directory.
"""

from __future__ import annotations

import hmac
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from cli.samples import INSTITUTIONS
from schemas.identity import Role

# The gateway records subjects on events and experts' subjects are reviewer ids: one pattern.
SUBJECT_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"
Subject = Annotated[str, Field(pattern=SUBJECT_PATTERN)]

# Published on purpose: synthetic people of a loopback test issuer, never a real credential.
DEMO_PASSWORD = "synthetic-demo-password"
DEMO_SCRIPTS_SECRET = "synthetic-demo-client-secret"
CLI_CLIENT_ID = "achievements-cli"
SCRIPTS_CLIENT_ID = "achievements-scripts"
# The municipal science and technology commission: the regulator's institution.
REGULATOR_INSTITUTION = "SHSTC"
# The experts the demo puts on review panels (cli/samples.py DEMO_EXPERTS): a reviewer id is
# the expert's token subject. tests/test_identity_provider.py checks the two lists agree.
DEMO_EXPERTS = [f"expert.syn-{k:02d}" for k in range(1, 7)]


class GrantType(StrEnum):
    CLIENT_CREDENTIALS = "client_credentials"
    PASSWORD = "password"
    REFRESH_TOKEN = "refresh_token"


class User(BaseModel):
    """A person who signs in with the password grant; `subject` becomes the token's `sub`."""

    model_config = ConfigDict(frozen=True)

    username: Subject
    password: SecretStr
    subject: Subject
    name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    institution: str | None = Field(default=None, min_length=1, max_length=64)


class Client(BaseModel):
    """An OAuth client. `secret` None: a public client (no client authentication).

    A client allowed `client_credentials` acts as its own service account, whose subject,
    roles and institution go into the tokens it gets.
    """

    model_config = ConfigDict(frozen=True)

    client_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    secret: SecretStr | None = None
    grant_types: frozenset[GrantType] = Field(min_length=1)
    name: str | None = Field(default=None, max_length=200)
    subject: Subject | None = None
    roles: list[Role] = Field(default_factory=list)
    institution: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _service_account(self) -> Self:
        if GrantType.CLIENT_CREDENTIALS in self.grant_types:
            # RFC 6749 4.4: only confidential clients may use client credentials.
            if self.secret is None:
                raise ValueError("a client_credentials client must have a secret")
            if self.subject is None or not self.roles:
                raise ValueError("a client_credentials client needs a subject and roles")
        return self

    def check_secret(self, secret: str) -> bool:
        if self.secret is None:
            return False
        expected = self.secret.get_secret_value().encode()
        return hmac.compare_digest(expected, secret.encode())


class Directory(BaseModel):
    """Users and clients, looked up by username and client id."""

    model_config = ConfigDict(frozen=True)

    users: list[User] = Field(default_factory=list)
    clients: list[Client] = Field(default_factory=list)
    _users: dict[str, User] = PrivateAttr(default_factory=dict)
    _clients: dict[str, Client] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        # A subject shared by two principals would make one act as the other at the gateway.
        subjects = [u.subject for u in self.users] + [c.subject for c in self.clients if c.subject]
        for label, values in (
            ("username", [u.username for u in self.users]),
            ("client_id", [c.client_id for c in self.clients]),
            ("subject", subjects),
        ):
            if len(set(values)) != len(values):
                raise ValueError(f"duplicate {label} in the directory")
        self._users = {u.username: u for u in self.users}
        self._clients = {c.client_id: c for c in self.clients}
        return self

    def client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def user(self, username: str) -> User | None:
        return self._users.get(username)

    def authenticate(self, username: str, password: str) -> User | None:
        user = self._users.get(username)
        # Compare even for an unknown user, so timing does not tell which usernames exist.
        expected = user.password.get_secret_value() if user else "\0unknown-user"
        matches = hmac.compare_digest(expected.encode(), password.encode())
        return user if user is not None and matches else None


def demo_directory() -> Directory:
    """Synthetic people for the demo institutions, and the CLI and scripts clients.

    Per institution `officer.<code>` (tto-officer) and `approver.<code>` (approver), the code
    lower-cased (`officer.syn-univ-a`); the experts the demo assigns (`expert.syn-01` to
    `expert.syn-06`, no institution: they review for all);
    `officer.poc-fund` (poc-fund-officer, no institution: the fund serves all of them) and
    `regulator.shstc` (regulator of SHSTC). Every password is `DEMO_PASSWORD`.
    """
    password = SecretStr(DEMO_PASSWORD)
    users: list[User] = []
    for inst in INSTITUTIONS:
        code = inst.code.lower()
        for prefix, role, title in (
            ("officer", Role.TTO_OFFICER, "Technology-transfer officer"),
            ("approver", Role.APPROVER, "Approver"),
        ):
            username = f"{prefix}.{code}"
            users.append(
                User(
                    username=username,
                    password=password,
                    subject=username,
                    name=f"{title}, {inst.name} (synthetic)",
                    roles=[role],
                    institution=inst.code,
                )
            )
    users += [
        User(
            username=expert,
            password=password,
            subject=expert,
            name=f"Expert {expert.rsplit('-', 1)[1]} (synthetic)",
            roles=[Role.EXPERT],
        )
        for expert in DEMO_EXPERTS
    ]
    users += [
        User(
            username="officer.poc-fund",
            password=password,
            subject="officer.poc-fund",
            name="Proof-of-concept fund officer (synthetic)",
            roles=[Role.POC_FUND_OFFICER],
        ),
        User(
            username="regulator.shstc",
            password=password,
            subject="regulator.shstc",
            name="Science and technology commission regulator (synthetic)",
            roles=[Role.REGULATOR],
            institution=REGULATOR_INSTITUTION,
        ),
    ]
    clients = [
        Client(
            client_id=CLI_CLIENT_ID,
            grant_types=frozenset({GrantType.PASSWORD, GrantType.REFRESH_TOKEN}),
            name="achievements command line",
        ),
        # Scripts and tests: a read-only service account of its own, and they may sign people
        # in with the password grant as a confidential client.
        Client(
            client_id=SCRIPTS_CLIENT_ID,
            secret=SecretStr(DEMO_SCRIPTS_SECRET),
            grant_types=frozenset(GrantType),
            name="Scripts service account (synthetic)",
            subject="svc.achievements-scripts",
            roles=[Role.REGULATOR],
            institution=REGULATOR_INSTITUTION,
        ),
    ]
    return Directory(users=users, clients=clients)
