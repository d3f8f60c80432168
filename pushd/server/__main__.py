"""``python -m pushd.server --config FILE`` (see pushd.server.main)."""

from __future__ import annotations

import sys

from pushd.server.main import main

sys.exit(main())
