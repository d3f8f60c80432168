"""``python -m pushd_ctl`` is ``push-jobs-server-ctl``."""

from __future__ import annotations

import sys

from pushd_ctl.main import main

sys.exit(main())
