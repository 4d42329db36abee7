import sys

from vreyesam.cli import main

sys.exit(main())
