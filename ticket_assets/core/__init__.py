"""Contracts shared by every layer: labels, language, text, names."""
