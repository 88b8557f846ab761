"""What the Dagster UI shows of the definitions: every metadata value serialisable, links typed as
URLs, dbt models described by their schema.yml (never their SQL) with typed, described columns."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import asset_node_snaps_from_repo

# dagster-dbt keeps its manifest and translator objects in the spec metadata for its own run-time
# use; the webserver hides exactly these two keys (its list of integration-internal metadata).
HIDDEN_BY_THE_UI = {"dagster_dbt/manifest", "dagster_dbt/dagster_dbt_translator"}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from ticket_assets.definitions import build_definitions
    from ticket_assets.settings import get_settings

    return build_definitions(get_settings().model_copy(update={"public_api_url": "http://api.example"}))


@pytest.fixture(scope="module")
def snaps(defs: dg.Definitions) -> dict[str, object]:
    """The asset nodes as the code location sends them to the UI."""
    return {
        node.asset_key.to_user_string(): node
        for node in asset_node_snaps_from_repo(defs.get_repository_def())
    }


def test_no_definition_metadata_is_unserializable_and_links_are_urls(snaps: dict[str, object]) -> None:
    shown = {
        (asset, key): value
        for asset, node in snaps.items()
        for key, value in node.metadata.items()
        if key not in HIDDEN_BY_THE_UI
    }
    unserializable = [k for k, v in shown.items() if "(unserializable)" in str(getattr(v, "value", ""))]
    assert not unserializable, unserializable
    plain_links = [
        k for k, v in shown.items() if isinstance(v, dg.TextMetadataValue) and v.value.startswith("http")
    ]
    assert not plain_links, plain_links

    api = snaps["ticketops_api"].metadata
    assert isinstance(api["docs"], dg.UrlMetadataValue) and api["docs"].value == "http://api.example/docs"
    assert api["console"].value == "http://api.example/console" and isinstance(
        api["console"], dg.UrlMetadataValue
    )


def test_dbt_models_are_described_by_their_schema_yml_with_typed_columns(snaps: dict[str, object]) -> None:
    models = {k: v for k, v in snaps.items() if k.startswith(("staging/", "marts/"))}
    assert {
        "staging/stg_tickets",
        "staging/stg_feedback_labels",
        "marts/training_set",
        "marts/live_quality",
    } <= set(models)
    for key, node in models.items():
        assert node.description and "select" not in node.description.lower(), key  # not the raw SQL
        assert "no description" not in node.description, key
        columns = node.metadata["dagster/column_schema"].schema.columns
        missing = [c.name for c in columns if c.type == "?" or not c.description]
        assert columns and not missing, (key, missing)


def test_groups_follow_the_flow(snaps: dict[str, object]) -> None:
    groups = {key: node.group_name for key, node in snaps.items()}
    assert groups["ticket_profile"] == "data_profile"
    assert groups["ticketops_api"] == groups["ops/predictions"] == groups["ops/feedback"] == "serving"
    assert groups["drift_report"] == "monitoring"
