"""HTTP serving for TicketOps: triage, knowledge-base answers and feedback over the registered model."""
