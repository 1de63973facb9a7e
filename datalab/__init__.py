"""The shared base of the data lab: wire types, canonical serialisation, signing, errors, area
codes, dataset manifests, identifier checks, and the analyst client.

The ground floor of the house: hub, node, recipes and the entry points build on it, and it
imports none of them (``.importlinter`` keeps it so). It must also stay importable without the
hub's server dependencies (FastAPI, SQLAlchemy) so that a node agent or an analyst's notebook
does not pull them in.
"""

__version__ = "0.1.0"
