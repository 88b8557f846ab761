"""TicketOps: a Dagster asset-graph platform that triages and answers IT support tickets."""

__version__ = "0.1.0"
