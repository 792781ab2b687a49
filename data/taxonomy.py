"""The memory-routing taxonomy: the single source of truth for labels, horizons and scopes.

Every path (SFT targets, rollout rewards, evaluation, serving) imports from here; nothing else
spells a label out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

NONE = "none"

# Persistence horizons, from longest-lived to the ones that churn. "Adjacent" pairs earn half
# credit in the temporal reward component (see `horizon_similarity`).
HORIZONS = ("long", "medium", "short", "rolling", "evolving")
_ADJACENT_HORIZONS = frozenset(
    frozenset(pair)
    for pair in (("long", "medium"), ("medium", "short"), ("medium", "rolling"), ("short", "rolling"))
)

SCOPES = ("company", "user", "mixed", "none")


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    horizon: str
    scope: str  # "company", "user" or "none"


CATEGORIES: tuple[Category, ...] = (
    Category("company.brand_core", "The company's identity: mission, values, voice, tone, positioning and "
             "visual or verbal brand guidelines.", "long", "company"),
    Category("company.strategic_signatures", "How the company habitually decides and competes: recurring "
             "strategic frameworks, go-to-market patterns, decision principles.", "long", "company"),
    Category("company.knowledge_artifacts", "Durable company documents and assets: playbooks, templates, "
             "research, style guides, case studies, approved messaging.", "long", "company"),
    Category("company.business_priorities", "Current company goals and constraints: this quarter's targets, "
             "launches, budgets, deadlines, compliance requirements.", "short", "company"),
    Category("company.tools_config", "The company's marketing stack and its set-up: platforms, integrations, "
             "account structures, tracking and automation settings.", "medium", "company"),
    Category("company.performance_context", "Recent results and benchmarks: campaign metrics, KPIs, test "
             "outcomes, trends against targets.", "rolling", "company"),
    Category("user.communication_style", "How this person wants to be spoken to: tone, length, format, "
             "level of detail, jargon.", "long", "user"),
    Category("user.strategic_approach", "How this person thinks about marketing problems: their priorities, "
             "risk appetite, favoured methods and reasoning habits.", "long", "user"),
    Category("user.role_context", "Who this person is at work: title, team, responsibilities, authority, "
             "stakeholders and reporting lines.", "medium", "user"),
    Category("user.workflow_patterns", "How this person works: routines, review and approval steps, "
             "cadences, hand-offs and tools they use day to day.", "medium", "user"),
    Category("user.session_history", "What happened in recent sessions with this person: open threads, "
             "decisions just made, follow-ups promised.", "short", "user"),
    Category("user.interaction_preferences", "How this person likes the assistant to behave, as it changes: "
             "proactivity, options versus one answer, check-ins, feedback style.", "evolving", "user"),
    Category(NONE, "Nothing worth remembering: small talk, one-off factual questions, or content with no "
             "lasting signal about the company or the person.", "short", "none"),
)

LABELS: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
REAL_LABELS: tuple[str, ...] = tuple(name for name in LABELS if name != NONE)
BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}
_ORDER = {name: i for i, name in enumerate(LABELS)}


class UnknownLabelError(ValueError):
    """A label that is not in the taxonomy."""


def category(name: str) -> Category:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownLabelError(f"unknown category {name!r}; expected one of: {', '.join(LABELS)}") from None


def canonical_order(labels: Iterable[str]) -> list[str]:
    """Deduplicate and sort labels in taxonomy order (unknown labels raise)."""
    unique = set(labels)
    for name in unique:
        category(name)
    return sorted(unique, key=_ORDER.__getitem__)


def clean_label_set(labels: Iterable[str]) -> list[str]:
    """Canonical order, with `none` dropped when it is mixed with a real label ("none" is exclusive)."""
    ordered = canonical_order(labels)
    if NONE in ordered and len(ordered) > 1:
        ordered.remove(NONE)
    return ordered


def majority_horizon(labels: Iterable[str]) -> str | None:
    """The most common persistence horizon of a label set, or None for an empty set.

    Ties are broken by the order of HORIZONS (long before medium before short ...), so the answer never
    depends on set iteration order. (The reference broke ties by Python set order, which varies per run.)
    """
    counts = Counter(category(name).horizon for name in labels)
    if not counts:
        return None
    best = max(counts.values())
    return next(h for h in HORIZONS if counts.get(h) == best)


def horizon_similarity(a: str | None, b: str | None) -> float:
    """1 for the same horizon, 0.5 for adjacent horizons, 0 otherwise (or when either is None)."""
    if a is None or b is None:
        return 0.0
    if a == b:
        return 1.0
    return 0.5 if frozenset((a, b)) in _ADJACENT_HORIZONS else 0.0


def set_scope(labels: Iterable[str]) -> str:
    """Scope of a label set: "company", "user", "mixed" or "none" (empty or only `none`)."""
    scopes = {category(name).scope for name in labels} - {"none"}
    if not scopes:
        return "none"
    return scopes.pop() if len(scopes) == 1 else "mixed"
