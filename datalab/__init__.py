"""Shared pieces of the data lab: wire types, canonical serialisation, signing, errors, the
analyst client and the ``datalab`` command.

This package must stay importable without the hub's server dependencies (FastAPI, SQLAlchemy) so
that a node agent or an analyst's notebook does not pull them in.
"""

__version__ = "0.1.0"
