"""The preflight checks, each a function of fit's parsed config (``context.Context``), and their runner.

``runner`` runs them (``CHECKS``, ``run_preflight``, ``enforce``); ``model``, ``data``, ``training`` and ``memory``
hold the checks by subject.
"""

from nano8k.checks.context import CheckFailed, CheckResult, Context
from nano8k.checks.runner import (
    CHECKS,
    FIXES,
    PreflightError,
    enforce,
    failed,
    format_results,
    make_context,
    run_preflight,
    troubleshooting_table,
)

__all__ = ["CHECKS", "FIXES", "CheckFailed", "CheckResult", "Context", "PreflightError", "enforce", "failed",
           "format_results", "make_context", "run_preflight", "troubleshooting_table"]
