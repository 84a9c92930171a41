"""``python -m unittests.grade``: the class grader's command, kept under its documented name.

The code lives in :mod:`unittests.grading` (see :mod:`unittests.grading.grade`).
"""

import sys

from unittests.grading.grade import main

if __name__ == "__main__":
    sys.exit(main())
