"""The Dagster layer: thin assets, checks, sensors and resources over the plain modules.

Modules here import the plain modules that need numpy, polars, scikit-learn, Qdrant or the model
runtime inside the asset and sensor bodies, never at module level: every process that loads the
asset graph (``ticketops materialize``, the code server, each run worker) then pays only for
Dagster and dagster-dbt, and a run imports what its own steps use (``tests/test_import_cost.py``).
"""
