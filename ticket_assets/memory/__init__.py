"""Ticket memory: the index of past tickets, similar-ticket search and duplicate detection."""
