"""The HTTP functions: start a job (202 at once), read its honest status, cancel it."""
