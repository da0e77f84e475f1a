import sys

from aio_ashb.cli import main

sys.exit(main())
