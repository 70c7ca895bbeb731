"""Charts of a channel's lifecycle: each participant's balance in the channel, step by step.

``draw_balances(ledgers)`` draws one subplot per ``Ledger`` (``paychan demo`` passes all its lifecycles)
from ``Ledger.timeline``: the deposits, every doubly-signed off-chain state, the unilateral close, the
challenge, a penalty proof, a secret revealed, a withdrawal and the payout. On-chain steps are filled
markers, off-chain states hollow ones; what a side has locked in pending conditional payments is a dashed
line of its colour (drawn only when something is locked). ``plot_balances(ledgers, path)`` writes it as a
PNG. matplotlib runs on its Agg backend (no display needed) and without pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from paychan.ledger import WEI_PER_ETH, Ledger, TimelinePoint

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLOURS = {"A": "#1f77b4", "B": "#d62728"}


def draw_balances(ledgers: Sequence[Ledger]) -> Figure:
    """A figure with one subplot per ledger: each participant's channel balance at every timeline step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if not ledgers:
        raise ValueError("nothing to plot: no ledgers")
    fig = Figure(figsize=(11, 4.2 * len(ledgers)), constrained_layout=True)
    axes = fig.subplots(len(ledgers), 1, squeeze=False)
    for ax, ledger in zip(axes[:, 0], ledgers, strict=True):
        _plot_ledger(ax, ledger)
    return fig


def plot_balances(ledgers: Sequence[Ledger], path: str | Path) -> Path:
    """Writes ``draw_balances(ledgers)`` as a PNG at ``path`` (creating its directory); returns the path."""
    fig = draw_balances(ledgers)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    return path


def _plot_ledger(ax: Axes, ledger: Ledger) -> None:
    from matplotlib.lines import Line2D

    points = ledger.timeline
    if not points:
        raise ValueError(f"ledger {ledger.title!r} has no timeline to plot")
    xs = list(range(len(points)))
    parties = {p.role: p for p in ledger.parties.values()}
    handles, locked_handles = [], []
    for role in ("A", "B"):
        name = parties[role].name if role in parties else role
        ys = [_eth(p.balance_a if role == "A" else p.balance_b) for p in points]
        (line,) = ax.step(xs, ys, where="post", color=COLOURS[role], linewidth=1.6, label=f"{name} ({role})")
        handles.append(line)
        on = [i for i, p in enumerate(points) if p.onchain]
        off = [i for i, p in enumerate(points) if not p.onchain]
        ax.scatter(on, [ys[i] for i in on], color=COLOURS[role], marker="s", s=36, zorder=3)
        ax.scatter(off, [ys[i] for i in off], facecolors="white", edgecolors=COLOURS[role], s=26, zorder=3)
        locked = [_eth(p.locked_a if role == "A" else p.locked_b) for p in points]
        if any(locked):
            (dashed,) = ax.step(
                xs, locked, where="post", color=COLOURS[role], linewidth=1.1, linestyle="--", label=f"locked by {name}"
            )
            locked_handles.append(dashed)
    handles += locked_handles
    handles.append(Line2D([], [], color="0.3", marker="s", linestyle="", label="on-chain transaction"))
    handles.append(
        Line2D(
            [],
            [],
            color="0.3",
            marker="o",
            markerfacecolor="white",
            linestyle="",
            label="off-chain state signed by both (no gas)",
        )
    )
    closes = [x for x, p in zip(xs, points, strict=True) if p.step.startswith("close (")]
    if closes:
        ax.axvspan(closes[0], xs[-1], color="#fff3cd", zorder=0)
        ax.text(
            closes[0] + 0.1,
            0.02,
            f"challenge period ({ledger.challenge_period} s)",
            fontsize=7,
            transform=ax.get_xaxis_transform(),
            color="0.35",
        )
    top = max(max(_eth(p.balance_a), _eth(p.balance_b)) for p in points)
    for x, point in zip(xs, points, strict=True):
        if point.onchain:
            ax.axvline(x, color="0.85", linewidth=0.8, zorder=0)
            label = _label(point, ledger)
            if label:
                last = x == xs[-1]  # the payout: written left of the final drop, clear of the other labels
                ax.annotate(
                    label,
                    xy=(x - 0.15, top * 0.55) if last else (x, top * 1.04),
                    ha="right" if last else "center",
                    va="center" if last else "bottom",
                    fontsize=7,
                    color="0.25",
                )
    ax.set_xticks(xs)
    ax.set_xticklabels([p.step for p in points], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("balance in the channel (ETH)")
    ax.set_title(ledger.title, fontsize=10)
    ax.set_ylim(0, top * 1.22)
    ax.set_xlim(-0.6, xs[-1] + 0.6)
    ax.grid(axis="y", color="0.9")
    ax.legend(handles=handles, loc="lower center", fontsize=7, ncols=2, framealpha=0.95)


def _label(point: TimelinePoint, ledger: Ledger) -> str | None:
    if point.step.startswith("close ("):
        return f"unilateral\n{point.step}"
    if point.step.startswith("challenge ("):
        return point.step.replace(" (", "\n(")
    if point.step == "revoked state proven":
        return "revoked state\nproven"
    if point.step == "secret revealed":
        return "secret\nrevealed"
    if point.step.startswith("withdrawal "):
        return point.step
    if point.step in ("closed", "settled"):
        paid = "\n".join(f"{p['name']} {_eth(p['amount']):g} ETH" for p in ledger.payouts)
        how = "cooperative close" if point.step == "closed" else "settle"
        return f"{how} paid out:\n{paid}"
    return None


def _eth(wei: int) -> float:
    return wei / WEI_PER_ETH


__all__ = ["draw_balances", "plot_balances"]
