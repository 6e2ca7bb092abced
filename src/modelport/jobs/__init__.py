"""Code packages, job environments, the cron scheduler and the run supervisor."""
