import sys

from llm_energy.cli import main

sys.exit(main())
