"""Many videos with the models loaded once: `talkgen batch`, on one machine or on a Ray cluster.

    jobs.py       what a batch is: a folder, files or a jobs.yaml, each job's recipe
    queue.py      the batch's state on disk in the output folder: lock, queue, job folders
    worker.py     a worker: the engine holder, running job after job through the pipeline
    local_pool.py worker processes on this machine, each with its share of the placement
    ray_pool.py   worker actors on a Ray cluster
    cost.py       what a batch will cost, before it runs
    live.py       the live view on stderr
    run.py        the batch itself: jobs to workers, failures kept apart, batch.report.json

(Named batching, not batch: talkgen.batch is the Python API's function.)
"""
