"""The store tools, each a command: ``status``, ``inspect`` (``inspection``), ``report``, ``gc``
(``collect``) and ``cancel``, sharing ``args``' command-line rules. None imports torch."""
