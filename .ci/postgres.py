"""python .ci/postgres.py start|stop DIR -- a throwaway PostgreSQL + pgvector (prints the DSN on start)."""

import sys

from promethean_persistence.testing.engines import start_postgres, stop_postgres

if sys.argv[1] == "start":
    print(start_postgres(sys.argv[2]))
else:
    stop_postgres(sys.argv[2])
