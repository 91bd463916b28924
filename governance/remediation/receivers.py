"""Fleet's command_run_finished → settle the remediation attempt of that run (the tick is the safety net)."""

import logging

logger = logging.getLogger(__name__)


def on_command_run_finished(sender, run_id, status, **kwargs):
    from .services import attempt_run_finished

    try:
        attempt_run_finished(run_id=run_id)
    except Exception:  # the agent's report must not fail because of enforce mode; the tick settles it later
        logger.exception("could not settle the remediation attempt of run %s", run_id)
