"""The Python client (`modelport.Client`) and the helpers used inside a running job (`in_task`, `task_args`)."""
