"""The CLI's commands, a module per group (clients.cli puts them in its click group):
``jobs`` (generate, wait, status, cancel), ``listing`` (list), ``evidence``, ``compare`` and
``webhooks`` (verify-webhook); ``common`` holds what they share (the runtime, the group's
settings, the shared options, the screen)."""
