"""The dataset folder = the Hub repo: layout, config schema, provenance, card, push, export."""
