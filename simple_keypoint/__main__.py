"""``python -m simple_keypoint ...``: the same as the ``simple-keypoint`` command."""

import sys

from simple_keypoint.cli import main

sys.exit(main())
