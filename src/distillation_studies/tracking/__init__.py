"""MLflow tracking of a study: the study run and one nested run per arm (``runs``), the Kedro hooks that
open and fill them (``hooks``), arms as MLflow models and the registry (``models``), and the splits each
arm trains on as MLflow datasets (``inputs``). No pipeline imports this package, and it imports none.

What crosses a process or session boundary is passed in, never kept: the session's parameters, folder
and environment are read by the hook of the run that needs them; the study run (:class:`runs.StudyRun`,
small and picklable) travels in the catalog (``study_run``) to every process that runs a node; an arm's
nested run is opened, fed and closed by the process that trains it, and found again by one query on its
tags; the search's nodes receive a :class:`runs.SearchTracking` as an input.

The process state that remains, all of it, and why:

- ``common.epochs`` subscriptions: arm label -> the live run's ``log_epoch``, from the node's start to its
  end (removed on success and on error). A live MLflow run cannot be pickled into a node's inputs, and
  the training loop must not know MLflow.
- ``hooks._running``: node name -> what that node logs into, between ``before_node_run`` and the
  ``after_dataset_saved`` of its last output (or ``on_node_error``). Kedro gives those hooks no shared
  per-node object; ``after_dataset_saved`` receives only the node.
- ``hooks._exit_handlers``: study run id -> its atexit and signal handlers, from ``before_pipeline_run``
  to the end of the run. Signal handlers and ``atexit`` are process-wide by nature.
- ``guards.run_guard.RunGuardHooks``' lock and parameters (one attribute each), from
  ``after_context_created`` to the end of the run: Kedro hands the context to that hook alone and
  registers the same hook instances (``settings.HOOKS``) in every session; each session sets them anew.
- ``config_loader._last_loader``: Kedro calls ``register_pipelines()`` without arguments, so the study's
  shape (one pipeline per arm) is read from the config loader the session created last.
- ``runner._worker_hooks``: one Kedro hook manager per Dask worker process (a hook manager cannot be
  pickled); the hooks it calls keep no state between nodes beyond ``_running`` above.
- ``worker_preload._importing``: a local Dask worker's background import of the project, which each task
  waits for (the cluster starts without waiting for the import).
- ``models._exported``: the last few ``torch.export`` programs traced for an arm's logged model, by
  architecture (spec, weight layout, pixel scale, metadata, input example). Tracing costs about 0.17 s
  per arm, writing a traced program with another arm's weights 0.03 s; each reuse is checked against the
  arm's own predictions first, and what a user loads is what a fresh export gives (tested).
- ``datasets.files._payloads``: the torch files read last (the teacher, the splits), by path, inode, size and
  modification time, 1 GiB of files at most: every arm of a study loads them, so a process (the driver or a
  Dask worker) reads each from disk once per study; every load gets its own deep copy (tested).
- ``model.spec`` on every model built by ``learning.models.build_model``: the architecture a checkpoint
  rebuilds from travels with the module it describes (``datasets.model_payload`` saves it).
"""
