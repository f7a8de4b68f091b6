"""Imported last by the server a local cluster's worker processes are forked from (:func:`runner.start_forkserver`),
after :data:`~distillation_studies.worker_preload.WORKER_MODULES`: the server ends without the interpreter's
teardown when the driver does. It holds the driver's stdout and stderr (its workers write there), so whoever
reads them to their end (``kedro run | tee``, a benchmark's ``subprocess.run``) waited another 1.7 s for it.
The workers forked from it end with ``os._exit`` already (multiprocessing's forkserver), never running this.
"""

from distillation_studies.worker_preload import end_without_teardown

end_without_teardown()
