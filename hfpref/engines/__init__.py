"""Engines that run the stages somewhere other than this process's ``datasets.map`` (a Ray cluster).

The CLI imports them (and users holding a ray.data.Dataset, hfpref.engines.ray.map_batches); an engine
drives the same stage objects and leaves the wire as it is.
"""
