"""Clients of the image job service: a CLI that starts a job and polls it to the end."""
