"""SnapStart: what a process restored from a snapshot redoes before its first invocation.

With SnapStart (prod), Lambda runs every function's init once, snapshots the process, and starts each new
execution environment from a copy of that snapshot, so whatever init created exists identically in all
of them. After a restore, `after_restore` runs (registered through `snapshot_restore_py`, the hooks module
Lambda's Python runtime provides; without it, on the local stack, nothing is registered):

- every hook registered with `flowpilot.resets`: the PSA httpx pool (`psa.factory`), the Claude writers'
  SDK clients (`writers.claude`), boto3 clients and resources (`store.*`), cached settings and answers; a
  pooled connection or a cached DNS answer from before the snapshot is not worth trusting;
- the `random` module's state, seeded once at init and so shared by every restored copy (botocore's
  retry jitter draws from it).

Ids, markers and tokens need no hook: they are drawn from OS randomness at call time (`secrets`, see
`clock.new_id`; a marker is made of a write-back id). Retry jitter of the write-back is Step Functions'
own (`JitterStrategy: FULL`).
"""

from __future__ import annotations

import random

from flowpilot import resets


def after_restore() -> None:
    """Re-create what must not be shared between execution environments restored from one snapshot."""
    random.seed()  # from os.urandom: each restored copy gets its own sequence
    resets.reset_all()


def register() -> bool:
    """Register `after_restore` with the runtime's hooks; False where the hooks module is absent."""
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:
        return False
    register_after_restore(after_restore)
    return True
