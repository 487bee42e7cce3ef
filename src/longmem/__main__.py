import sys

from longmem.cli import main

sys.exit(main())
