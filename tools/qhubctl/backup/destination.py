"""Where a backup goes: an S3-compatible bucket (`s3://bucket/prefix`) or a local directory.

Each part of the platform (`meta`, `files`) is a restic repository of its own below the destination:
`<dest>/meta` and `<dest>/files`. An S3 destination is written by the Jobs directly (no data through this machine);
a local directory is staged in a volume next to each Job and copied here file by file (restic's files never change
once written, so only new ones are copied).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from qhubctl.errors import UserError

PARTS = ("meta", "files")
# AWS's variables restic (and boto) read; passed to the Jobs in a Secret of the run.
S3_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Destination:
    text: str
    local: Path | None = None  # a local directory
    bucket: str = ""
    prefix: str = ""

    @property
    def is_s3(self) -> bool:
        return self.local is None

    def describe(self) -> str:
        return str(self.local) if self.local else f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def part_dir(self, part: str) -> Path:
        assert self.local is not None
        return self.local / part

    def s3_repository(self, part: str, endpoint: str) -> str:
        """restic's name for the part's repository in the bucket."""
        key = "/".join(p for p in (self.prefix, part) if p)
        return f"s3:{endpoint.rstrip('/')}/{self.bucket}/{key}"


def parse(text: str) -> Destination:
    """DEST of `qhubctl backup -o` / SOURCE of `qhubctl restore`."""
    if not text.strip():
        raise UserError("the destination is empty", hint="give a local directory or s3://bucket/prefix")
    if text.startswith("s3://"):
        url = urlparse(text)
        if not _BUCKET.match(url.netloc or ""):
            raise UserError(f"{text!r}: {url.netloc!r} is not a valid S3 bucket name",
                            hint="s3://<bucket>/<prefix>: 3-63 lower-case letters, digits, dots and hyphens")
        return Destination(text, bucket=url.netloc, prefix=url.path.strip("/"))
    if "://" in text:
        raise UserError(f"{text!r}: only s3:// URLs and local directories are supported",
                        hint="for Google Cloud Storage or Azure use their S3-compatible endpoint (AWS_ENDPOINT_URL)")
    path = Path(text).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"{text!r} exists and is not a directory", hint="give a directory (it is created if missing)")
    return Destination(text, local=path)


def s3_settings(env: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """(endpoint, variables for the Jobs) from this machine's AWS variables; errors name the missing one."""
    env = dict(os.environ if env is None else env)
    missing = [k for k in S3_CREDENTIALS[:2] if not env.get(k)]
    if missing:
        raise UserError(f"an s3:// destination needs {' and '.join(missing)} in the environment",
                        hint="export the access key of an identity that may read and write the bucket")
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or f"https://s3.{region}.amazonaws.com"
    if not endpoint.startswith(("http://", "https://")):
        raise UserError(f"AWS_ENDPOINT_URL {endpoint!r} is not an http(s) URL",
                        hint="e.g. https://s3.eu-west-1.amazonaws.com or http://minio.example:9000")
    variables = {k: env[k] for k in S3_CREDENTIALS if env.get(k)}
    variables["AWS_DEFAULT_REGION"] = region
    return endpoint, variables
