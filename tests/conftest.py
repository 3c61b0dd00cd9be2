"""Lets tests import their shared case builders (tests/ is not a package)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
