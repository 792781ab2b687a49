import sys

from memroute.cli import main

sys.exit(main())
