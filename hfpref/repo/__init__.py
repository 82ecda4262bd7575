"""The dataset folder = the Hub repo: layout, card, push, export."""
