"""``python detect.py ...`` from a checkout: the same as ``simple-keypoint detect ...``
(the code is simple_keypoint/detect.py; ``python detect.py --help`` lists the options)."""

import sys

from simple_keypoint.detect import main

if __name__ == "__main__":
    sys.exit(main())
