"""The preflight checks, each a function of fit's parsed config (``context.Context``), and their runner.

``runner`` runs them (``CHECKS``, ``run_preflight``, ``enforce``); ``model``, ``data``, ``training`` and ``memory``
hold the checks by subject.
"""

from nano8k.checks.context import CheckResult, Context
from nano8k.checks.runner import (
    CHECKS,
    FIXES,
    enforce,
    failed,
    format_results,
    make_context,
    run_preflight,
    troubleshooting_table,
)
from nano8k.errors import CheckFailed, PreflightError

__all__ = [
    "CHECKS",
    "FIXES",
    "CheckFailed",
    "CheckResult",
    "Context",
    "PreflightError",
    "enforce",
    "failed",
    "format_results",
    "make_context",
    "run_preflight",
    "troubleshooting_table",
]
