"""`python -m pushd_knife`: the same as the `push-jobs` console script."""

from __future__ import annotations

import sys

from pushd_knife.main import main

sys.exit(main())
