"""python -m backend: the same as the cabinet-backend command."""
import sys

from .cli import main

sys.exit(main())
