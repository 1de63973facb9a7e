"""``python -m datalab.synth``: the synth command without the rest of the ``datalab`` CLI."""

import sys

from datalab.synth.cli import main

sys.exit(main())
