"""``python -m pushd_bench`` : the emulator."""

from __future__ import annotations

import sys

from pushd_bench.emulator import main

sys.exit(main())
