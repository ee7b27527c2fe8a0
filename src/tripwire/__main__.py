"""``python -m tripwire`` runs the CLI."""

import sys

from tripwire.cli.main import main

# Guarded: the gateway's monitor process is spawned, and a spawned child imports the
# parent's main module (as ``__mp_main__``) before it runs its own target.
if __name__ == "__main__":
    sys.exit(main())
