"""The worker: consuming a target's queue, the target call, queue depths, the retry schedule.

`consumer` (the `Worker`: consume, claim, settle, drain), `plan` (`WorkerPlan`), `target_call`
(one attempt at the target), `depths` (queue depths into the metrics), `pacing`, `retry`.
"""
