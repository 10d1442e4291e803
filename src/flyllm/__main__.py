"""``python -m flyllm``: the ``flyllm`` command without the installed script."""

import sys

from flyllm.cli.main import main

if __name__ == "__main__":  # importing the module (a walk over the package) runs nothing
    sys.exit(main())
