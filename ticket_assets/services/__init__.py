"""Locate or start the platform's backing services (embedded defaults when nothing is configured)."""
