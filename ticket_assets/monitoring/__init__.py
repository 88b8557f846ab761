"""Production monitoring without Dagster: drift between reference and live predictions (``drift``,
its config in ``drift_config``, the domain classifier in ``domain_classifier``)."""
