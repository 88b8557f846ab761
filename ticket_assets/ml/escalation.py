"""Escalation policy: wording rules that raise a prediction's urgency, never lower it.

A model learns urgency from how past tickets were labelled; a ransomware report written calmly can
come out ``low``. A small, readable rule set (``escalation_rules.yaml``: ransomware, phished
credentials, security incidents, outages, data loss, many users affected, VIPs; English and French
patterns) sets a floor: a matching rule raises the urgency to its ``min_urgency`` and names itself,
and the model's own urgency stays visible next to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ticket_assets.core.labels import URGENCY_LEVELS

DEFAULT_RULES_PATH = Path(__file__).with_name("escalation_rules.yaml")


class EscalationRulesError(ValueError):
    """The rules file is not what the policy expects (one line naming the problem)."""


@dataclass(frozen=True)
class EscalationRule:
    name: str
    min_urgency: str
    all_of: tuple[re.Pattern[str], ...] = ()
    any_of: tuple[re.Pattern[str], ...] = ()

    def matches(self, text: str) -> bool:
        if not all(p.search(text) for p in self.all_of):
            return False
        return not self.any_of or any(p.search(text) for p in self.any_of)


@dataclass(frozen=True)
class Escalation:
    urgency: str | None  # the urgency after the policy (>= the model's)
    model_urgency: str | None  # what the model predicted
    escalated: bool  # a rule raised the urgency
    rule: str | None  # the first matching rule (most urgent floor first), raised or not
    matched: tuple[str, ...]  # every rule that matched


@dataclass(frozen=True)
class EscalationPolicy:
    rules: tuple[EscalationRule, ...]

    @classmethod
    def load(cls, path: Path | str | None = None) -> EscalationPolicy:
        path = Path(path) if path is not None else DEFAULT_RULES_PATH
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise EscalationRulesError(f"cannot read escalation rules {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise EscalationRulesError(f"escalation rules {path} are not valid YAML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "escalation rules") -> EscalationPolicy:
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            raise EscalationRulesError(f"{source}: expected a mapping with a 'rules' list")
        rules = []
        for i, raw in enumerate(data["rules"]):
            where = f"{source}: rule {i + 1}"
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise EscalationRulesError(f"{where}: needs a 'name'")
            if raw.get("min_urgency") not in URGENCY_LEVELS:
                raise EscalationRulesError(
                    f"{where} ({raw['name']}): min_urgency must be one of {URGENCY_LEVELS}"
                )
            compiled = {}
            for key in ("all", "any"):
                patterns = raw.get(key) or []
                if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                    raise EscalationRulesError(f"{where} ({raw['name']}): '{key}' must be a list of patterns")
                try:
                    compiled[key] = tuple(re.compile(p, re.IGNORECASE) for p in patterns)
                except re.error as exc:
                    raise EscalationRulesError(f"{where} ({raw['name']}): bad pattern: {exc}") from None
            if not compiled["all"] and not compiled["any"]:
                raise EscalationRulesError(f"{where} ({raw['name']}): needs 'all' or 'any' patterns")
            rules.append(EscalationRule(raw["name"], raw["min_urgency"], compiled["all"], compiled["any"]))
        # Most urgent floor first, file order among equals: the named rule is the strongest reason.
        rules.sort(key=lambda r: -URGENCY_LEVELS.index(r.min_urgency))
        return cls(tuple(rules))

    def apply(self, text: str, model_urgency: str | None) -> Escalation:
        """The urgency after the rules. An urgency outside ``URGENCY_LEVELS`` (a custom label set)
        or no urgency model at all: the floor itself is reported."""
        matched = tuple(rule.name for rule in self.rules if rule.matches(text))
        if not matched:
            return Escalation(model_urgency, model_urgency, False, None, ())
        floor = next(rule for rule in self.rules if rule.name == matched[0]).min_urgency
        rank = URGENCY_LEVELS.index(model_urgency) if model_urgency in URGENCY_LEVELS else -1
        raised = URGENCY_LEVELS.index(floor) > rank
        return Escalation(floor if raised else model_urgency, model_urgency, raised, matched[0], matched)
