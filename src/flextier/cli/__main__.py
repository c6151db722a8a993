"""``python -m flextier.cli``: the same entry as the ``flextier`` console script."""
import sys

from . import main

sys.exit(main())
