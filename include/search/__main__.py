import sys

from include.search.cli import main

sys.exit(main())
