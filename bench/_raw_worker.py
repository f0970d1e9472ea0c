"""`python -m bench._raw_worker PROCESS_ID START_EPOCH SECONDS`: one connection of ceiling 1a with
several connections (the environment comes from the bench). Prints the transaction count."""
import sys
import time

import django

django.setup()

from bench import naive  # noqa: E402

pid, start, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
naive.step_shaped_transaction(pid)  # connect before the start line
time.sleep(max(0.0, start - time.time()))
print(naive.raw_loop(pid, seconds))
