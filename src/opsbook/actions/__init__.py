"""Built-in actions callable from ``action`` blocks, and the registry that finds them.

An action is an async function ``(ctx, args) -> result`` registered under a dotted name.
Packages contribute actions through the entry-point group ``opsbook.actions``: each entry point
names a module attribute that is a mapping ``name -> ActionSpec`` (see ``ACTIONS`` in
``opsbook.actions.core``).
"""

from opsbook.actions._registry import ActionContext, ActionSpec, action, load_registry

__all__ = ["ActionContext", "ActionSpec", "action", "load_registry"]
