"""`qhubctl cost [--simulate users=N,dask-workers=M,hours=H]`."""

from __future__ import annotations

from pathlib import Path

import typer

from qhubctl.commands._common import ConfigOpt, handles_errors, load, out
from qhubctl.cost import Pricing, load_prices, pricing
from qhubctl.cost.shapes import node_shapes
from qhubctl.cost.simulate import parse_load, simulate


def _say(line: str) -> None:
    out.print(line, markup=False)


def baseline_rows(price: Pricing) -> list[str]:
    """The baseline table: one row for the control plane and one per node group, columns aligned."""
    rows = [("control plane", "", "", "", price.control_plane_hourly * price.hours_per_month)]
    for g in price.groups.values():
        rows.append((g.name, g.instance_type or "simulated", f"{g.min_nodes} x", f"${g.hourly:.4f}/h",
                     g.monthly_min * price.hours_per_month))
    head = ("part", "instance", "min", "price", "monthly")
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(4)]
    money = max(len(f"${r[4]:,.2f}") for r in rows)
    fmt = "  {:<%d}  {:<%d}  {:>%d}  {:>%d}  {:>%d}" % (*widths, max(money, len(head[4])))
    return [fmt.format(*head).rstrip()] + [fmt.format(*r[:4], f"${r[4]:,.2f}") for r in rows]


@handles_errors
def cost(
    config: Path = ConfigOpt,
    simulate_load: str | None = typer.Option(None, "--simulate", metavar="users=N,dask-workers=M,hours=H",
                                             help="Run this load on the local simulated cluster and price it."),
    prices: Path | None = typer.Option(None, "--prices", help="Price file merged over the built-in table.",
                                       envvar="QHUB_PRICES"),
    cloud: str | None = typer.Option(None, "--cloud", help="Price as on this cloud (default: the config's)."),
    seconds_per_hour: float = typer.Option(10.0, "--seconds-per-hour", min=2.0,
                                           help="Real seconds one simulated hour lasts."),
) -> None:
    """Monthly baseline cost of the config: control plane + min nodes of every group x price; with --simulate also
    the node-hours and cost per group of that load."""
    cfg = load(config)
    table = load_prices(prices)
    price = pricing(cfg, table, cloud)
    hours = price.hours_per_month
    _say(f"prices: {price.cloud}, as of {price.as_of}; source: {price.source}"
         + (f"; overridden by {table['overridden_by']}" if table.get("overridden_by") else ""))
    _say(f"monthly baseline ({hours:g} h): ${price.baseline_monthly():,.2f}")
    for line in baseline_rows(price):
        _say(line)
    if not simulate_load:
        return
    wanted = parse_load(simulate_load)
    shapes = node_shapes(cfg, price, table)
    _say("simulated nodes (the instance type's vCPUs and memory minus the kubelet's system reservation; "
         "DaemonSets not counted):")
    for name, shape in shapes.items():
        _say(f"  {name:<10} {shape.describe()}")
    result = simulate(cfg, wanted, shapes=shapes, seconds_per_hour=seconds_per_hour, log=_say)
    window = result.window_hours
    total = price.control_plane_hourly * window
    _say(f"simulated {result.load.hours:g} h of load ({result.load.users} users, {result.load.dask_workers} Dask "
         f"workers) plus {window - result.load.hours:.2f} h scale-down tail = {window:.2f} simulated hours "
         f"(accelerated: 1 h = {result.seconds_per_hour:g} s)")
    _say(f"  {'group':<10} {'node-hours':>10} {'above min':>10} {'peak':>5} {'cost':>10}")
    for name, use in result.groups.items():
        group_cost = use.node_hours * price.groups[name].hourly
        total += group_cost
        _say(f"  {name:<10} {use.node_hours:>10.2f} {use.above_min_hours:>10.2f} {use.peak_nodes:>5} "
             f"${group_cost:>9,.2f}")
    _say(f"  total incl. control plane: ${total:,.2f}")
    if result.pending_at_end:
        _say(f"note: {result.pending_at_end} pod(s) still had no node when the load ended: a group hit its max, "
             "or no group fits them")
