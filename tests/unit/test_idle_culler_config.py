"""The idle culler's config: a timeout from 1 minute to a week, checked every quarter of it (at most as rarely as
the chart's own period), and a clear refusal naming the field outside that range."""

from __future__ import annotations

import pytest

from qhubctl.config import parse_config
from qhubctl.errors import ConfigError
from qhubctl.values import chart_values, subchart_defaults

pytestmark = pytest.mark.unit


def _values(minutes: int | None) -> dict:
    raw = {"schema_version": 2, "project_name": "demo", "cluster": {"provider": "local"}}
    if minutes is not None:
        raw["jupyterhub"] = {"idle_culler": {"timeout_minutes": minutes}}
    return dict(chart_values(parse_config(raw, environ={}))["jupyterhub"]["cull"])


def test_the_default_keeps_the_charts_check_period() -> None:
    chart = subchart_defaults("jupyterhub")["cull"]
    assert _values(None) == {"enabled": True, "timeout": 3600, "every": chart["every"]}


@pytest.mark.parametrize(("minutes", "every"), [(1, 15), (4, 60), (20, 300), (10080, 300)])
def test_a_timeout_is_checked_every_quarter_of_it_at_most_every_five_minutes(minutes: int, every: int) -> None:
    assert _values(minutes) == {"enabled": True, "timeout": minutes * 60, "every": every}


@pytest.mark.parametrize("minutes", [0, -5, 10081])
def test_a_timeout_outside_a_minute_to_a_week_is_refused_naming_the_field(minutes: int) -> None:
    with pytest.raises(ConfigError) as info:
        _values(minutes)
    assert "jupyterhub.idle_culler.timeout_minutes" in str(info.value), str(info.value)
