"""The stages: generate, judge and curate as ``datasets.map`` functions, and the jobs that run them."""
