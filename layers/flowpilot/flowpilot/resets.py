"""What a process forgets on demand: cached clients, pools, settings and answers.

Two callers: `snapstart.after_restore` (a process restored from a snapshot must not share a pooled
connection or a cached DNS answer with its siblings) and the local stack and the tests
(`devstack.aws.reset_process_caches`, after the environment or the emulated AWS changed). Each module
registers its own hook, named `reset_caches`, next to what it caches: `@resets.register`.
"""

from __future__ import annotations

from collections.abc import Callable

Hook = Callable[[], None]

_hooks: list[Hook] = []


def register(hook: Hook) -> Hook:
    """Run `hook` on every `reset_all()` (once, however often it is registered); returns it, so it decorates."""
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


def registered() -> list[Hook]:
    return list(_hooks)


def reset_all() -> None:
    """Run every registered hook, in the order they were registered."""
    for hook in list(_hooks):
        hook()
