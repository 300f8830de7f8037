"""``python -m gradwatch`` runs the command-line tool."""

import sys

from gradwatch.cli.main import main

sys.exit(main())
