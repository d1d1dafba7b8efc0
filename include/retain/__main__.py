import sys

from include.retain.cli import main

sys.exit(main())
