"""Engines that run the stages somewhere other than this process's ``datasets.map`` (a Ray cluster).

Only the CLI imports them; an engine drives the same stage objects and leaves the wire as it is.
"""
