"""Loading the asset graph imports Dagster and dagster-dbt, not the libraries of the steps.

Every ``ticketops materialize``, code server and run worker loads the definitions before it does
anything; numpy, polars, scikit-learn, MLflow, Qdrant, Evidently and the model runtime are imported
by the steps that use them (ticket_assets/defs/__init__.py). Together they cost about half a second
of a process that loads with the garbage collector on (a code server, a run worker).
"""

import json
import subprocess
import sys

STEP_LIBRARIES = (
    "evidently",
    "ftfy",
    "joblib",
    "lingua",
    "matplotlib",
    "mlflow",
    "numpy",
    "onnxruntime",
    "pandas",
    "polars",
    "qdrant_client",
    "scipy",
    "sklearn",
    "tokenizers",
)


def _imported_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_loading_the_asset_graph_imports_no_step_library():
    imported = _imported_after("from ticket_assets.definitions import defs\ndefs.resolve_asset_graph()")
    assert "dagster" in imported and "dagster_dbt" in imported
    assert sorted(imported & set(STEP_LIBRARIES)) == []


def test_the_materialize_command_path_imports_no_step_library():
    # What `ticketops materialize` imports before its run starts (the run's steps import the rest).
    imported = _imported_after(
        "import ticket_assets.cli, ticket_assets.runner\n"
        "from ticket_assets.definitions import build_definitions\n"
        "from ticket_assets.settings import get_settings\n"
        "build_definitions(get_settings()).resolve_implicit_global_asset_job_def()"
    )
    assert sorted(imported & set(STEP_LIBRARIES)) == []


def test_a_step_library_is_seen_when_imported():
    # The probe itself can fail: importing a plain module that needs polars shows polars.
    assert "polars" in _imported_after("import ticket_assets.ml.dataset")
