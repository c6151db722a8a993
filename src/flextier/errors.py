"""The documented exception hierarchy; see :mod:`flextier.policy.errors`."""
from .policy.errors import *  # noqa: F401,F403
from .policy.errors import __all__  # noqa: F401
