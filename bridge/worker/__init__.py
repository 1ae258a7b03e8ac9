"""The worker: consuming a target's queue, the target call, queue depths, the retry schedule."""
