"""Who can log in, which groups exist (shared folders, profile access) and who is admin."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, HttpUrl, field_validator, model_validator

from qhubctl.config.base import Base, FieldProblem, Name, Secret

_USERNAME = r"^[a-z0-9][-a-z0-9._@]{0,63}$"


class Group(Base):
    """A POSIX group: members share /shared/<group> (setgid, mode 2770)."""

    gid: int = Field(ge=1000, le=65000, description="Numeric group id on the shared filesystem (1000-65000)")
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


class DummyAuth(_LocalAccounts):
    """Any password logs in as any listed user. For tests and demos only."""

    type: Literal["dummy"] = Field(description="Test-only authenticator")


class NativeAuth(_LocalAccounts):
    """JupyterHub's own user database: users sign up, admins approve."""

    type: Literal["native"] = Field(description="Usernames and passwords kept by JupyterHub")
    open_signup: bool = Field(False, description="Let anyone sign up without admin approval")


class GitHubAuth(_AuthBase):
    """Log in with GitHub (OAuth app)."""

    type: Literal["github"] = Field(description="GitHub OAuth")
    client_id: str = Field(min_length=1, description="OAuth app client id")
    client_secret: Secret = Field(description="OAuth app secret: {secretRef: ...} or QHUB_SECRET__auth__client_secret")
    allowed_organizations: list[str] = Field(default_factory=list, description="Only members of these organisations")

    @field_validator("allowed_organizations")
    @classmethod
    def _orgs(cls, value: list[str]) -> list[str]:
        for org in value:
            if not org or "/" in org.split(":")[0] or " " in org:
                raise ValueError(f"{org!r} is not a GitHub organisation (or org:team) name")
        return value


class OIDCAuth(_AuthBase):
    """Any OpenID Connect provider (Keycloak, Okta, Azure AD, Google...)."""

    type: Literal["oidc"] = Field(description="Generic OpenID Connect")
    login_service_name: str = Field("OIDC", min_length=1, max_length=40, description="Name on the login button")
    authorize_url: HttpUrl = Field(description="Authorization endpoint of the provider")
    token_url: HttpUrl = Field(description="Token endpoint of the provider")
    userdata_url: HttpUrl = Field(description="User info endpoint of the provider")
    client_id: str = Field(min_length=1, description="Client id registered at the provider")
    client_secret: Secret = Field(description="Client secret: {secretRef: ...} or QHUB_SECRET__auth__client_secret")
    username_claim: str = Field("preferred_username", min_length=1, description="Claim used as the user name")
    groups_claim: str | None = Field(
        None, min_length=1, description="Claim listing the user's groups; set it to take groups from the provider"
    )
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"], description="Requested scopes")

    @field_validator("authorize_url", "token_url", "userdata_url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        if value.scheme != "https":
            raise ValueError("the provider's endpoints must be https:// URLs")
        return value


Auth = Annotated[DummyAuth | NativeAuth | GitHubAuth | OIDCAuth, Field(discriminator="type")]
