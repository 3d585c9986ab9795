"""Activities: the only code that talks to the model's route and to Blob Storage.

``generate`` runs one attempt (stream from the route, record every clock, store previews and the
image); ``finish`` writes metadata.json and the job's one structured log event.
"""
