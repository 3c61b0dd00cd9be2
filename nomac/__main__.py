import sys
from nomac.cli import main

sys.exit(main())
