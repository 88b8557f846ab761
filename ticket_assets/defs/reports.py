"""Data report on the training mart: what the model is about to learn from, as numbers and a picture."""

import dagster as dg

from ticket_assets.defs.keys import TRAINING_SET
from ticket_assets.defs.metadata import png_markdown
from ticket_assets.defs.resources import PostgresResource


@dg.asset(
    key="ticket_profile",
    deps=[TRAINING_SET],
    group_name="data_profile",  # between the marts and training: read before the model trains
    kinds={"polars", "matplotlib"},
    owners=["team:data-platform"],
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Profile of `marts.training_set`: class balance, text lengths, missing values, duplicates, language "
        "mix and weekly volume, with a 2×2 figure. Read it before trusting a newly trained model."
    ),
)
def ticket_profile(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    from ticket_assets.ml.dataset import load_training_set
    from ticket_assets.reports.profile import profile_training_set, render_png, to_markdown

    with postgres.connect() as conn:
        frame = load_training_set(conn)
    profile = profile_training_set(frame)
    summary = profile.summary()
    context.log.info(f"profiled {profile.n_rows} training rows")
    return dg.MaterializeResult(
        metadata={
            **{name: value for name, value in summary.items()},
            "dagster/row_count": dg.MetadataValue.int(profile.n_rows),
            "profile": dg.MetadataValue.md(to_markdown(profile)),
            "figure": png_markdown(render_png(profile), "training set profile"),
        }
    )
