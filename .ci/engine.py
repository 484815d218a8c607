"""python .ci/engine.py start|stop postgres|chroma|mongo DIR -- throwaway engines on loopback
(start prints the DSN/URL to use)."""

import sys

from promethean_persistence.testing import engines

action, kind, root = sys.argv[1:4]
if action == "start":
    print(getattr(engines, f"start_{kind}")(root))
else:
    getattr(engines, f"stop_{kind}")(root)
