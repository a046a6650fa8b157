"""botocore failures as messages a user can act on: credentials, permissions, quotas, the network."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import botocore.exceptions

from qhubctl.errors import QHubError, UserError

F = TypeVar("F", bound=Callable[..., Any])

_CREDENTIAL_CODES = {"UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                     "ExpiredToken", "ExpiredTokenException", "AuthFailure", "InvalidAccessKeyId",
                     "IncompleteSignature", "MissingAuthenticationToken"}
_PERMISSION_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException",
                     "NotAuthorized"}


def explain(exc: Exception) -> QHubError:
    """A botocore failure as a message a user can act on."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return UserError("no AWS credentials found",
                         hint="set AWS_PROFILE (see `aws configure`), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                              "or run where an instance/container role is available")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        text = str(error.get("Message", "")).strip()
        op = exc.operation_name
        if code in _CREDENTIAL_CODES:
            return UserError(f"AWS rejected the credentials ({code}): {text}",
                             hint="check AWS_PROFILE or the access key pair; refresh expired SSO/STS sessions")
        if code in _PERMISSION_CODES:
            return UserError(f"missing AWS permission for {op}: {text}",
                             hint=f"grant the identity `{_iam_action(exc)}` (see docs/providers.md for the policy)")
        if "LimitExceeded" in code or "QuotaExceeded" in code or code == "ResourceLimitExceededException":
            return UserError(f"AWS quota reached in {op} ({code}): {text}",
                             hint="delete unused resources or request a quota increase in Service Quotas")
        return QHubError(f"AWS {op} failed ({code}): {text}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return QHubError(f"cannot reach AWS: {exc}", hint="check the network, the region and AWS_ENDPOINT_URL")
    return QHubError(f"AWS call failed: {exc}")


def _iam_action(exc: botocore.exceptions.ClientError) -> str:
    """The IAM action a denial names ("... not authorized to perform: eks:CreateCluster ..."), else the call."""
    found = re.search(r"perform:? ([a-z0-9-]+:[A-Za-z0-9]+)", str(exc.response.get("Error", {}).get("Message", "")))
    return found.group(1) if found else exc.operation_name


def aws_errors(fn: F) -> F:
    """Run `fn`, turning botocore's errors into QHub's (explain)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise explain(exc) from None

    return wrapper  # type: ignore[return-value]
