"""``python -m node_agent ...`` runs ``datalab node ...`` (handy before the main CLI exists)."""

import sys

from node_agent.cli import main

sys.exit(main())
