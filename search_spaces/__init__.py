"""Search spaces turn an Optuna trial into a JSON spec and a spec into an ``nn.Module``.

A space of your own is a :class:`SearchSpace` (see ``experiments/custom/``), found by ``get`` through the entry
point group ``robust_nas.spaces`` or a ``"package.module:Name"`` reference; the helpers below check its specs.
"""
from ._base import (COMMON_KEYS, ENTRY_POINT_GROUP, SearchSpace, SpecError, available, build, check_common, check_keys,
                    default_ranges, get, register, require, require_choice, summary)
from ._modules import Ensemble, Normalize
from ._suggest import suggest
from . import cnn, ensemble, mlp  # noqa: F401  (registration)

__all__ = ["COMMON_KEYS", "ENTRY_POINT_GROUP", "SearchSpace", "SpecError", "Ensemble", "Normalize", "available",
           "build", "check_common", "check_keys", "default_ranges", "get", "register", "require", "require_choice",
           "summary", "suggest"]
