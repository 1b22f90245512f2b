"""kern: agents that learn (an agent loop with persistent Learning Stores).

The public API lives in the subpackages (``kern.agent``, ``kern.learn``, ``kern.models``,
``kern.db`` …); importing ``kern`` itself loads nothing else, so ``kern.__version__`` is cheap.
"""

# The one place the version is written: pyproject.toml reads it (setuptools' `attr:`, parsed
# without importing), so an editable install and a wheel report the same number.
__version__ = "0.1.0"

# The name pip installs kern under (`kern` on PyPI is another project); install hints use it.
DISTRIBUTION = "kern-agents"

__all__ = ["DISTRIBUTION", "__version__"]
