"""The escalation policy on the shipped rules file: urgent wording raises urgency, never lowers it."""

from __future__ import annotations

import pytest

from ticket_assets.ml.escalation import EscalationPolicy, EscalationRulesError
from ticket_assets.sources.synthetic import generate_tickets

POLICY = EscalationPolicy.load()
AT_LEAST_HIGH = {"high", "critical"}


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (
            "Ransomware: all files on the finance share are encrypted and there is a ransom note.",
            "ransomware",
        ),
        ("Rançongiciel : tous les fichiers du partage finance sont chiffrés.", "ransomware"),
        (
            "I clicked a link in a phishing email and entered my password on the page before I noticed.",
            "credentials_phished",
        ),
        (
            "J'ai cliqué sur un lien d'un mail d'hameçonnage et j'ai saisi mon mot de passe.",
            "credentials_phished",
        ),
        ("Site-wide outage: nobody can reach the intranet, the whole office is down.", "outage"),
        ("Panne générale : tout le bâtiment n'a plus d'accès au réseau, impossible de travailler.", "outage"),
        (
            "The shared drive was wiped overnight, files have been deleted from the project folder.",
            "data_loss",
        ),
        ("Our CEO cannot open the board meeting deck on her laptop.", "vip"),
        ("About 40 users are affected and cannot log in to the ERP since 9am.", "many_users"),
    ],
)
def test_urgent_wording_raises_a_low_prediction_to_at_least_high(text: str, rule: str) -> None:
    result = POLICY.apply(text, "low")
    assert result.urgency in AT_LEAST_HIGH
    assert result.escalated and result.rule == rule
    assert result.model_urgency == "low"


def test_ransomware_is_critical_even_when_the_model_says_high() -> None:
    result = POLICY.apply("ransomware encrypted every file on the server", "high")
    assert (result.urgency, result.escalated, result.model_urgency) == ("critical", True, "high")


def test_never_lowers_a_more_urgent_prediction() -> None:
    result = POLICY.apply("I clicked a phishing link and typed my password into it", "critical")
    assert result.urgency == "critical" and not result.escalated
    assert result.rule == "credentials_phished"  # matched, but nothing to raise


@pytest.mark.parametrize(
    "text",
    [
        "My printer on floor 2 shows a paper jam, can someone have a look this week?",
        "Merci de m'installer Visio sur mon poste, ce n'est pas urgent.",
        "I received a phishing email and deleted it without clicking anything.",
        "Please reset my password, I forgot it after the holidays.",
    ],
)
def test_benign_tickets_are_not_escalated(text: str) -> None:
    result = POLICY.apply(text, "low")
    assert (result.urgency, result.escalated, result.rule) == ("low", False, None)


def test_rules_file_errors_are_one_line(tmp_path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - name: x\n    min_urgency: extreme\n    any: ['a']\n")
    with pytest.raises(EscalationRulesError, match="min_urgency must be one of"):
        EscalationPolicy.load(bad)
    with pytest.raises(EscalationRulesError, match="cannot read"):
        EscalationPolicy.load(tmp_path / "missing.yaml")


def test_custom_rules_file_replaces_the_default(tmp_path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: payroll\n    min_urgency: high\n    any: ['payroll run']\n")
    policy = EscalationPolicy.load(path)
    assert policy.apply("the payroll run failed", "low").rule == "payroll"
    assert not policy.apply("ransomware everywhere", "low").escalated


def test_synthetic_escalation_cases_carry_the_urgency_the_rules_give() -> None:
    frame = generate_tickets(3000, seed=7)
    cases = frame.filter(frame["extra"].str.contains('"escalation":"'))
    assert cases.height >= 10
    for title, body, urgency in cases.select("title", "body", "urgency").iter_rows():
        result = POLICY.apply(f"{title}\n{body}", "low")
        assert result.escalated, (title, body)
        assert urgency == result.urgency, (title, urgency, result.urgency)
