"""``python -m flyllm``: the ``flyllm`` command without the installed script."""

import sys

from flyllm.cli.main import main

sys.exit(main())
