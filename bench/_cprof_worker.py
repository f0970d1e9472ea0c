import cProfile, os, time
from slct_workflows.workers.worker import Worker

class CProfWorker(Worker):
    def work(self, *a, **k):
        prof = cProfile.Profile(time.process_time)
        prof.enable()
        try:
            return super().work(*a, **k)
        finally:
            prof.disable()
            prof.dump_stats(f"/tmp/rqc/cprof-{os.getpid()}.prof")
