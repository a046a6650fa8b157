"""Who can log in, which groups exist (shared folders, profile access) and who is admin.

No login is open by accident: a dummy, GitHub or OIDC login that names nobody (no users, admins, organisations or
provider groups) is refused unless `allow_all: true` says so; native accounts are approved by an admin (whose
password is generated at deploy, never written here); OIDC user names come from a stable claim (`sub`).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, HttpUrl, field_validator, model_validator

from qhubctl.config.base import Base, FieldProblem, Name, Secret

_USERNAME = r"^[a-z0-9][-a-z0-9._@]{0,63}$"


class Group(Base):
    """A POSIX group: members share /shared/<group> (group gid, setgid, mode 2770), and their servers and Dask
    workers carry the gid as a supplementary group. Every user runs as a uid of their own, which the hub hands out
    from 100000 up and keeps for good, so user ids and group gids (at most 65000) never meet."""

    gid: int = Field(ge=1000, le=65000, description="Numeric group id on the shared filesystem (1000-65000; user "
                                                    "uids start at 100000)")
    description: str = Field("", description="What the group is for")


class User(Base):
    groups: list[Name] = Field(default_factory=list, description="Groups the user belongs to")


class _AuthBase(Base):
    users: dict[Annotated[str, Field(pattern=_USERNAME)], User] = Field(
        default_factory=dict, description="Known users and their groups"
    )
    groups: dict[Name, Group] = Field(default_factory=dict, description="Groups and their gids")
    admins: list[str] = Field(default_factory=list, description="User names with JupyterHub admin rights")

    @model_validator(mode="after")
    def _references(self) -> _AuthBase:
        problems: list[tuple[str, str]] = []
        for name, user in self.users.items():
            for i, group in enumerate(user.groups):
                if group not in self.groups:
                    problems.append((f"users.{name}.groups[{i}]",
                                     f"group {group!r} is not defined; add it under auth.groups with a gid"))
        gids: dict[int, str] = {}
        for name, group in self.groups.items():
            if group.gid in gids:
                problems.append((f"groups.{name}.gid", f"gid {group.gid} is already used by group {gids[group.gid]!r}"))
            gids.setdefault(group.gid, name)
        if problems:
            raise FieldProblem(problems)
        return self


class _LocalAccounts(_AuthBase):
    @model_validator(mode="after")
    def _admins_known(self) -> _LocalAccounts:
        problems = [(f"admins[{i}]", f"{admin!r} is not a user; add it under auth.users")
                    for i, admin in enumerate(self.admins) if admin not in self.users]
        if problems:
            raise FieldProblem(problems)
        return self


class _Gated(_AuthBase):
    """A login that lets in whoever the identity provider vouches for, unless the config names who may log in."""

    allow_all: bool = Field(
        False, description="Let everyone the login accepts in (dummy: any user name with the shared password; "
        "github/oidc: every account at the provider). Off: only the users, admins and (github) allowed_organizations "
        "or (oidc) allowed_groups listed here",
    )
    # who else is admitted besides users and admins (allowed_organizations, allowed_groups), and what "everyone" is
    _also: ClassVar[tuple[str, ...]] = ()
    _everyone: ClassVar[str] = "anyone"

    def _named(self) -> bool:
        return bool(self.users or self.admins or any(getattr(self, f) for f in self._also))

    @model_validator(mode="after")
    def _nobody_named(self) -> _Gated:
        if not self.allow_all and not self._named():
            listed = " or ".join(["auth.users", "auth.admins", *(f"auth.{f}" for f in self._also)])
            raise FieldProblem([("allow_all", f"nobody is named, so {self._everyone} could log in: list who may "
                                              f"under {listed}, or set auth.allow_all: true to admit everyone on "
                                              "purpose")])
        return self


class DummyAuth(_Gated, _LocalAccounts):
    """One shared password for every listed user, generated at the first deploy and kept in the hub Secret (key
    `dummy-password`; `qhubctl status` prints the command that reads it); admins share a second one of their own
    (key `dummy-admin-password`). For tests and demos only."""

    type: Literal["dummy"] = Field(description="Test-only authenticator")
    _everyone: ClassVar[str] = "any user name with the shared password"


class NativeAuth(_LocalAccounts):
    """JupyterHub's own user database: users sign up, admins approve. Each admin's password is generated at deploy
    into the hub Secret (qhubctl deploy shows it once); nobody can sign up under an admin's name."""

    type: Literal["native"] = Field(description="Usernames and passwords kept by JupyterHub")
    open_signup: bool = Field(False, description="Let anyone sign up without admin approval")

    @model_validator(mode="after")
    def _approver(self) -> NativeAuth:
        if not self.admins and not self.open_signup:
            raise FieldProblem([("admins", "native login needs an admin to approve sign-ups: list one here (and "
                                           "under auth.users); its password is generated at deploy. Or set "
                                           "auth.open_signup: true to let anyone in")])
        return self


class GitHubAuth(_Gated):
    """Log in with GitHub (OAuth app)."""

    type: Literal["github"] = Field(description="GitHub OAuth")
    client_id: str = Field(min_length=1, description="OAuth app client id")
    client_secret: Secret = Field(description="OAuth app secret: {secretRef: ...} or QHUB_SECRET__auth__client_secret")
    allowed_organizations: list[str] = Field(default_factory=list, description="Only members of these organisations")
    _also: ClassVar[tuple[str, ...]] = ("allowed_organizations",)
    _everyone: ClassVar[str] = "every GitHub account"

    @field_validator("allowed_organizations")
    @classmethod
    def _orgs(cls, value: list[str]) -> list[str]:
        for org in value:
            if not org or "/" in org.split(":")[0] or " " in org:
                raise ValueError(f"{org!r} is not a GitHub organisation (or org:team) name")
        return value


class OIDCAuth(_Gated):
    """Any OpenID Connect provider (Keycloak, Okta, Azure AD, Google...)."""

    type: Literal["oidc"] = Field(description="Generic OpenID Connect")
    login_service_name: str = Field("OIDC", min_length=1, max_length=40, description="Name on the login button")
    authorize_url: HttpUrl = Field(description="Authorization endpoint of the provider")
    token_url: HttpUrl = Field(description="Token endpoint of the provider")
    userdata_url: HttpUrl = Field(description="User info endpoint of the provider")
    client_id: str = Field(min_length=1, description="Client id registered at the provider")
    client_secret: Secret = Field(description="Client secret: {secretRef: ...} or QHUB_SECRET__auth__client_secret")
    username_claim: str = Field(
        "sub", min_length=1,
        description="Claim used as the user name. Default sub, the provider's stable subject id; claims a user can "
                    "change (preferred_username, email at many providers) let whoever takes a name over take the "
                    "account. Changing it on a running deployment renames every user, so deploy refuses that",
    )
    groups_claim: str | None = Field(
        None, min_length=1, description="Claim listing the user's groups; set it to take groups from the provider"
    )
    allowed_groups: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Members of these provider groups (groups_claim) may log in"
    )
    _also: ClassVar[tuple[str, ...]] = ("allowed_groups",)
    _everyone: ClassVar[str] = "every account at the provider"
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"], description="Requested scopes")

    @field_validator("authorize_url", "token_url", "userdata_url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        if value.scheme != "https":
            raise ValueError("the provider's endpoints must be https:// URLs")
        return value

    @model_validator(mode="after")
    def _groups_need_claim(self) -> OIDCAuth:
        if self.allowed_groups and self.groups_claim is None:
            raise FieldProblem([("allowed_groups", "the provider's groups are unknown without groups_claim: set "
                                                   "auth.groups_claim to the claim that lists them (e.g. groups)")])
        return self


Auth = Annotated[DummyAuth | NativeAuth | GitHubAuth | OIDCAuth, Field(discriminator="type")]
