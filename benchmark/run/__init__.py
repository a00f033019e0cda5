"""Planning and executing jobs: a run config becomes jobs (:mod:`.runner`), each job one (task, model, shard) run
in this process or on Dask workers (:mod:`.distributed`, :mod:`.jobqueue`), generating with capture
(:mod:`.generation`) or reading one pass (:mod:`.one_pass`) over the task's dataset (:mod:`.tasks`), and stored
(:mod:`.jobs`, :mod:`benchmark.store`)."""
