"""The status page (`GET /` on the health server) and the HTML report: Jinja2 templates, autoescaped, with their
charts drawn as SVG on the server and nothing fetched from elsewhere, so that an air-gapped cluster shows it whole."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined

from . import __version__
from .breaker import CircuitBreaker
from .charts import bars, sparkline
from .cycle import CycleResult
from .dashboard import HISTORY, Snapshot
from .ledger import CycleSummary
from .models import CycleOutcome, Difficulty, EventKind, EventStatus, Severity
from .schedule import describe
from .scoring import Scorecard, combine, percent
from .settings import Settings

if TYPE_CHECKING:
    from .health import RunningCycle  # the health server renders the page: it imports this module

REFRESH_SECONDS = 5
# The page's icon, inline: the browser's request for /favicon.ico never goes out, so it cannot fail.
ICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Crect width='16' height='16' rx='3' fill='%23245a8d'/%3E%3Cpath d='M3 9h3l2-5 2 8 2-3h1' "
    "stroke='white' stroke-width='1.6' fill='none'/%3E%3C/svg%3E"
)
TEMPLATES = Environment(
    loader=PackageLoader("cyberevents"),
    autoescape=True,  # every value, the agent's summaries included, is text: none is markup
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters |= {"percent": percent}


def timeline_marks(cycles: Sequence[CycleSummary], slots: int = HISTORY) -> list[tuple[CycleSummary, int, float]]:
    """The cycles oldest first, the newest at the right end, each with its x and the height of its mark: its
    duration against the longest, a small mark for a slot that never ran."""
    longest = max((cycle.duration_seconds or 0.0 for cycle in cycles), default=0.0) or 1.0
    first = slots - len(cycles)
    return [
        (
            cycle,
            (first + index) * 20 + 1,
            6.0 if cycle.duration_seconds is None else max(4.0, round(34 * cycle.duration_seconds / longest, 1)),
        )
        for index, cycle in enumerate(reversed(cycles))
    ]


def on_time(cycles: Sequence[CycleSummary]) -> str:
    """The cycles' outcomes counted, and how late the latest started after its slot: the timeline in one line."""
    if not cycles:
        return ""
    counts = Counter(cycle.outcome for cycle in cycles)
    outcomes = ", ".join(
        f"{counts[outcome]} {outcome.value.replace('_', ' ')}" for outcome in CycleOutcome if counts[outcome]
    )
    late = [(cycle.started_at - cycle.slot_at).total_seconds() for cycle in cycles if cycle.slot_at and cycle.ran]
    lateness = f"; started at most {max(late):.1f} s after their slots" if late else ""
    return f"the last {len(cycles)}: {outcomes}{lateness}"


TEMPLATES.globals |= {"sparkline": sparkline, "timeline_marks": timeline_marks, "icon": ICON, "version": __version__}


def nonce() -> str:
    return secrets.token_urlsafe(16)


def content_security_policy(script_nonce: str) -> str:
    """Nothing but this page's own inline style and script (by nonce), its data-URI icon, and its own origin to
    poll: no remote source, no plugin, no frame, no form."""
    return (
        f"default-src 'none'; script-src 'nonce-{script_nonce}'; style-src 'nonce-{script_nonce}'; "
        "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@dataclass(frozen=True, slots=True)
class Trend:
    """One figure of the agent's over the scored cycles, oldest first, and its latest value."""

    name: str
    values: list[float | None]
    detail: str = ""  # the counts behind the latest value

    @property
    def latest(self) -> float | None:
        return self.values[-1] if self.values else None


def trends(scorecards: dict[int, tuple[str, Scorecard]]) -> list[Trend]:
    """Recall (both forms, then each), false-positive rate and precision, then recall per scenario and form."""
    cards = [card for _, card in scorecards.values()]
    shown = [
        Trend("recall", [card.recall for card in cards]),
        *(Trend(f"recall, {form.value}", [card.recall_of(form) for card in cards]) for form in Difficulty),
        Trend("false-positive rate", [card.false_positive_rate for card in cards]),
        Trend("precision", [card.precision for card in cards]),
    ]
    rows = sorted(
        {(row.scenario, row.kind, row.difficulty) for card in cards for row in card.scenarios if row.attack},
        key=lambda key: (key[0], list(EventKind).index(key[1]), key[2] is Difficulty.SUBTLE),
    )
    by_card = [{(row.scenario, row.kind, row.difficulty): row for row in card.scenarios} for card in cards]
    for key in rows:
        found = [scenarios.get(key) for scenarios in by_card]
        latest = found[-1]
        detail = f"{latest.flagged}/{latest.answered} flagged" if latest else "none in the latest cycle"
        scenario, kind, form = key
        values = [row.flag_rate if row else None for row in found]
        shown.append(Trend(f"{scenario} ({kind.value}, {form.value})", values, detail))
    return shown


@dataclass(frozen=True, slots=True)
class Now:
    """What the daemon is doing, from its own state: the live part of the page."""

    state: str  # starting, idle, running, draining
    not_ready: list[str]  # why /readyz fails; empty when ready
    next_run: datetime | None
    breaker: CircuitBreaker | None
    running: RunningCycle | None
    last: CycleResult | None


@dataclass(frozen=True, slots=True)
class Configuration:
    """What the page says of its configuration: never a secret."""

    schedule: str  # in words
    settings: list[tuple[str, str]]


def render_page(
    snapshot: Snapshot | None, now: Now, configuration: Configuration, script_nonce: str, main_only: bool = False
) -> str:
    """The whole page, or (`main_only`) just its <main>, which the page's script swaps in to refresh itself.
    `snapshot` is None until the database has answered once."""
    template = TEMPLATES.get_template("page.html")
    context = {
        "snapshot": snapshot,
        "now": now,
        "configuration": configuration,
        "trends": trends(snapshot.scorecards) if snapshot else [],
        "nonce": script_nonce,
        "refresh_seconds": REFRESH_SECONDS,
        "outcomes": list(CycleOutcome),
        "severity_bars": bars([(s.value, snapshot.severities.get(s.value, 0)) for s in Severity]) if snapshot else [],
        "dead_lettered_status": EventStatus.DEAD_LETTERED,
        "on_time": on_time(snapshot.cycles) if snapshot else "",
    }
    if main_only:
        return "".join(template.blocks["main"](template.new_context(context)))
    return template.render(context)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two spans of cycles side by side, as `score --compare` shows them."""

    names: tuple[str, str]
    rows: list[tuple[str, str, str, str]]  # scenario or figure, first, second, change


def render_report(
    scorecards: dict[int, tuple[str, Scorecard]],
    cycles: Sequence[CycleSummary],
    title: str,
    comparison: Comparison | None = None,
) -> str:
    """One self-contained HTML file: the scorecard summed over `scorecards`' events (or two compared), cycle by
    cycle, and the cycles' rows of the ledger. It fetches nothing and runs no script: it opens offline. ValueError
    if the cycles were scored at different thresholds: their counts do not add up."""
    card = combine(card for _, card in scorecards.values())
    assert card is not None, "a report is rendered only of scored cycles"
    return TEMPLATES.get_template("report.html").render(
        title=title,
        agents=sorted({agent for agent, _ in scorecards.values()}),
        threshold=card.threshold.value,
        card=card,
        trends=trends(scorecards),
        scorecards=scorecards,
        cycles=cycles,
        comparison=comparison,
        written_at=datetime.now(UTC),
        nonce=nonce(),
    )


def configuration(settings: Settings) -> Configuration:
    """The configuration the page shows: the settings that change what it shows, never a secret. The agent's URL
    is shown as its scheme, host and port only: a path or a query may carry a token."""
    agent = settings.agent_url
    rows: list[tuple[str, object]] = [
        ("AGENT_URL", f"{agent.scheme}://{agent.host}{f':{agent.port}' if agent.port else ''}" if agent else None),
        ("AGENT_LABEL", settings.agent_label),
        ("AGENT_PAYLOAD", settings.agent_payload),
        ("DISPATCH_WORKERS", settings.dispatch_workers),
        ("AGENT_TIMEOUT_SECONDS", settings.agent_timeout_seconds),
        ("MAX_ATTEMPTS", settings.max_attempts),
        ("DETECTION_THRESHOLD", settings.detection_threshold.value),
        ("LOGIN_EVENTS", settings.login_events),
        ("FIREWALL_EVENTS", settings.firewall_events),
        ("PATCH_EVENTS", settings.patch_events),
        ("RETENTION_DAYS", settings.retention_days),
    ]
    return Configuration(
        describe(settings.schedule, settings.schedule_tz),
        [(name, "unset" if value is None else str(value)) for name, value in rows],
    )


def headers(script_nonce: str) -> dict[str, str]:
    """What the page is sent with: its content security policy, and no caching, sniffing or referrer."""
    return {
        "Content-Security-Policy": content_security_policy(script_nonce),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
