"""Importers of public preference sources into the same folder layout (used by builder_scripts/)."""
