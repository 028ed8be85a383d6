"""Search spaces turn an Optuna trial into a JSON spec and a spec into an ``nn.Module``."""
from ._base import SearchSpace, SpecError, available, build, get, summary
from ._modules import Ensemble, Normalize
from ._suggest import suggest
from . import cnn, mlp  # noqa: F401  (registration)

__all__ = ["SearchSpace", "SpecError", "Ensemble", "Normalize", "available", "build", "get", "summary", "suggest"]
