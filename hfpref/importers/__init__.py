"""Importers of public preference sources into the same folder layout: one module per source
(``nemo_gym``, ``helpsteer3``, ``ultrafeedback``, ``prm800k``, ``dpogen``), each a ``build(options, ...)``
over the shared :class:`~hfpref.importers.base.Importer`; ``builder_scripts/`` are their command lines."""
