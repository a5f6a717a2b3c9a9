import sys

from uldl_studio.cli import main

sys.exit(main())
