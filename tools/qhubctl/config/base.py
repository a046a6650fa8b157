"""Building blocks shared by every config section: the strict base model, constrained types, secret values."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetCoreSchemaHandler, SecretStr
from pydantic_core import PydanticCustomError, core_schema


class Base(BaseModel):
    """Every config model: unknown keys are errors, assignments are validated, docs come from field descriptions."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


# Marks a field that can never change after the first deploy (checked against the config stored in the cluster).
IMMUTABLE = {"immutable": True}

Name = Annotated[
    str,
    Field(pattern=r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$", description="Lower-case letters, digits and '-'"),
]
Quantity = Annotated[
    str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$", description="Kubernetes quantity, e.g. 4Gi")
]
Hostname = Annotated[
    str,
    Field(
        max_length=253,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        description="Fully qualified DNS name, lower case, no scheme or path",
    ),
]


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address like 203.0.113.10") from None


def _cidr_block(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block like 203.0.113.0/24 ({exc})") from None
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length: write {net} for one address")
    return str(net)


IPAddress = Annotated[str, AfterValidator(_ip_address), Field(description="IPv4 or IPv6 address")]
CIDRBlock = Annotated[str, AfterValidator(_cidr_block),
                      Field(description="IPv4 or IPv6 CIDR block, e.g. 203.0.113.0/24")]
# How a Service is reached: its own load-balancer address, a port on every node, or inside the cluster only.
ServiceType = Literal["LoadBalancer", "NodePort", "ClusterIP"]
KubernetesVersion = Annotated[
    str, Field(pattern=r"^1\.[0-9]{2}$", description="Kubernetes minor version, e.g. '1.34' (quote it in YAML)")
]
# Kubernetes minors QHub supports (the chart's kubeVersion floor up to the newest tested minor).
SUPPORTED_K8S = tuple(f"1.{m}" for m in range(31, 37))
DEFAULT_K8S = "1.34"


class FieldProblem(ValueError):
    """Cross-field problems, each with the path of the field to fix relative to the top of the config."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems


class EnvValue(str):
    """A string that came from a QHUB_SECRET__... environment variable, not from the file."""


class SecretRefTarget(Base):
    name: Name = Field(description="Name of a Secret in the deployment's namespace")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", description="Key inside that Secret")


class SecretRef(Base):
    """A reference to a value kept in a Kubernetes Secret: `{secretRef: {name: ..., key: ...}}`."""

    secret_ref: SecretRefTarget = Field(alias="secretRef")


class _EnvSecretType:
    """Validator that admits a plain string only when it came from the environment (EnvValue)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def check(value: Any) -> SecretStr:
            if isinstance(value, SecretStr):
                return value
            if isinstance(value, EnvValue):
                return SecretStr(str(value))
            raise PydanticCustomError(
                "secret_in_file",
                "a secret value cannot be written in the config file",
            )

        return core_schema.no_info_plain_validator_function(
            check, json_schema_input_schema=core_schema.str_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "description": "Only through a QHUB_SECRET__<path> environment variable"}


# A secret: a reference to a Kubernetes Secret in the file, or a value from a QHUB_SECRET__ environment variable.
Secret = Annotated[SecretRef | Annotated[SecretStr, _EnvSecretType], Field(json_schema_extra={"secret": True})]


def secret_env_name(path: tuple[str, ...]) -> str:
    """QHUB_SECRET__auth__client_secret for ("auth", "client_secret")."""
    return "QHUB_SECRET__" + "__".join(path)


_QTY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$")
_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "Ki": 1024, "M": 1e6, "Mi": 1024**2, "G": 1e9, "Gi": 1024**3,
          "T": 1e12, "Ti": 1024**4}


def quantity_value(text: str | float | int) -> float:
    """Numeric value of a Kubernetes quantity ("1.5" -> 1.5, "4Gi" -> 4294967296, "500m" -> 0.5)."""
    match = _QTY.match(str(text))
    if not match:
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]
