"""Scheduled backups (docs/backup.md, "Scheduled backups"): two CronJobs, one per part of the archive, that
`qhubctl deploy` keeps in step with this section; no `schedule`, no CronJobs."""

from __future__ import annotations

import re
import zoneinfo
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from qhubctl.backup.destination import parse
from qhubctl.config.base import Base, FieldProblem, Secret
from qhubctl.errors import UserError

# The macros Kubernetes' CronJob schedule accepts besides five fields.
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Each of the five fields: its name, lowest and highest value, and the names it accepts for values.
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()), ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS))
_ITEM = re.compile(r"^(?P<range>\*|\?|[A-Za-z0-9]+(-[A-Za-z0-9]+)?)(/(?P<step>[0-9]+))?$")


def _cron_value(text: str, field: tuple[str, int, int, tuple[str, ...]]) -> int:
    name, low, high, names = field
    number = names.index(text.upper()) + (1 if name == "month" else 0) if text.upper() in names else None
    if number is None and not text.isdigit():
        raise ValueError(f"{text!r} is not a {name}" + (f" ({low}-{high} or {names[0]}-{names[-1]})" if names
                                                         else f" ({low}-{high})"))
    value = int(text) if number is None else number
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is outside {low}-{high}")
    return value


def check_cron(schedule: str) -> str:
    """A CronJob schedule Kubernetes accepts: five fields (minute hour day-of-month month day-of-week) or a macro;
    ValueError saying what is wrong and what to write instead."""
    text = " ".join(schedule.split())
    if text.startswith("@"):
        if text not in CRON_MACROS:
            raise ValueError(f"{schedule!r} is not a schedule macro; use one of {', '.join(CRON_MACROS)} or five "
                             "fields, e.g. '0 3 * * *' (03:00 every day)")
        return text
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise ValueError("Kubernetes refuses a time zone inside the schedule; set backup.time_zone instead")
    fields = text.split(" ")
    if len(fields) != len(CRON_FIELDS):
        raise ValueError(f"{schedule!r} has {len(fields)} fields, a schedule has five: minute hour day-of-month "
                         "month day-of-week, e.g. '0 3 * * *' (03:00 every day), or a macro such as @daily")
    for item_text, field in zip(fields, CRON_FIELDS):
        for item in item_text.split(","):
            match = _ITEM.match(item)
            if not match:
                raise ValueError(f"{item!r} is not a valid {field[0]} (a value, a range a-b, * or */n, comma "
                                 "separated), e.g. '0 3 * * *'")
            if match["step"] is not None and int(match["step"]) == 0:
                raise ValueError(f"{item!r}: a step of 0 never repeats; use /1 or more")
            if match["range"] not in ("*", "?"):
                bounds = [_cron_value(v, field) for v in match["range"].split("-")]
                if len(bounds) == 2 and bounds[0] > bounds[1]:
                    raise ValueError(f"{item!r}: the {field[0]} range runs backwards; write the lower value first")
    return text


class BackupSettings(Base):
    """Scheduled backups to an S3-compatible bucket: `qhubctl deploy` creates two CronJobs (`meta` as the hub's
    uid next to the hub; `files` as root in the NFS server's namespace, or with storage.type existing in the
    namespace <namespace>-backup, Pod Security baseline, through a second volume on the shared storage), their
    ConfigMaps, a Secret with the archive's key and the bucket's credentials, and NetworkPolicies; without
    `schedule` it removes them. One-off runs (`qhubctl backup`) need none of this."""

    schedule: str | None = Field(
        None, description="When to back up, as a Kubernetes CronJob schedule: five fields (minute hour "
        "day-of-month month day-of-week), e.g. '0 3 * * *' for 03:00 every day, or @daily, @hourly, @weekly, "
        "@monthly, @yearly; empty: no scheduled backups (deploy removes the CronJobs)")
    time_zone: str = Field("Etc/UTC", description="IANA time zone the schedule is read in, e.g. Europe/Berlin")
    keep: int | None = Field(
        None, ge=1, le=10000,
        description="Snapshots to keep per part after each scheduled run (restic forget --keep-last N --prune: "
        "older ones and the data only they use are deleted); empty: keep every snapshot")
    destination: str | None = Field(
        None, description="s3://bucket/prefix the parts' repositories go to (<prefix>/meta, <prefix>/files); "
        "only S3: a local directory is on the machine running qhubctl, which a CronJob cannot reach")
    endpoint: str | None = Field(
        None, description="S3 endpoint URL (MinIO, Ceph, GCS's or another S3-compatible service), reachable from "
        "the cluster; empty: AWS's https://s3.<region>.amazonaws.com")
    region: str = Field("us-east-1", pattern=r"^[a-z0-9-]{2,32}$", description="The bucket's region")
    access_key_id: Secret | None = Field(
        None, description="Access key id of an identity that may read, write and delete in the bucket: "
        "{secretRef: {name: <Secret>, key: AWS_ACCESS_KEY_ID}} or QHUB_SECRET__backup__access_key_id")
    secret_access_key: Secret | None = Field(
        None, description="Its secret key: {secretRef: {name: <Secret>, key: AWS_SECRET_ACCESS_KEY}} or "
        "QHUB_SECRET__backup__secret_access_key")
    timeout_minutes: int = Field(360, ge=5, le=10080,
                                 description="A scheduled run still going after this long is stopped (failed)")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise ValueError(f"{value!r} is not an IANA time zone; write e.g. Etc/UTC or Europe/Berlin")
        return value

    @field_validator("destination")
    @classmethod
    def _s3_only(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith("s3://"):
            raise ValueError(f"{value!r} is not s3://bucket/prefix: a schedule writes to an S3-compatible bucket "
                             "only, because a local directory is on the machine running qhubctl, which a CronJob "
                             "in the cluster cannot reach (back up to a directory with `qhubctl backup -o DIR`)")
        try:
            parse(value)
        except UserError as exc:
            raise ValueError(f"{exc.message} - {exc.hint}") from None
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
                raise ValueError(f"{value!r} is not an http(s) URL of an endpoint, e.g. https://minio.example:9000")
        return value

    @model_validator(mode="after")
    def _complete(self) -> BackupSettings:
        if self.schedule is None:
            return self
        needs = {"destination": "set it to s3://<bucket>/<prefix>",
                 "access_key_id": "write {secretRef: {name: <Secret>, key: AWS_ACCESS_KEY_ID}} or set "
                                  "QHUB_SECRET__backup__access_key_id",
                 "secret_access_key": "write {secretRef: {name: <Secret>, key: AWS_SECRET_ACCESS_KEY}} or set "
                                      "QHUB_SECRET__backup__secret_access_key"}
        problems = [(name, f"a schedule needs it: {fix}") for name, fix in needs.items() if getattr(self, name) is None]
        if problems:
            raise FieldProblem(problems)
        return self

    def endpoint_url(self) -> str:
        return (self.endpoint or f"https://s3.{self.region}.amazonaws.com").rstrip("/")
