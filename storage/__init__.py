"""Blob Storage behind one small protocol: the only seam between the app and storage.

``ImageStore`` is what activities (write images, previews, progress, metadata) and the status
endpoint (read progress and metadata, hand out read-only links) need; ``storage.azure_blob`` is
the one module that imports azure.storage.blob; tests use an in-memory store.
"""
