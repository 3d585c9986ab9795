"""The Blob store on Azurite: a large write from a view goes up in staged blocks and reads back
whole; bytes go up in one request as before."""

from __future__ import annotations

import random

import pytest

from localrun.stack import LocalStack
from rules.settings import StorageSettings
from storage.azure_blob import BLOCK_BYTES, AzureBlobBatchStore, AzureBlobImageStore

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

STACK = {"with_devhost": False}  # Azurite is all this needs


@pytest.fixture(scope="module")
def store(stack: LocalStack) -> AzureBlobImageStore:
    settings = StorageSettings(connection_string=stack.storage_connection_string)
    images = AzureBlobImageStore.from_settings(settings)
    images.ensure_container()
    return images


def test_the_stack_without_devhost_runs_azurite_and_the_simulator_only(stack: LocalStack):
    assert [child.name for child in stack.children()] == ["simulator", "azurite"]
    assert stack.devhost is None


def test_a_view_larger_than_a_block_is_written_in_blocks_and_reads_back_whole(
    store: AzureBlobImageStore,
):
    data = random.Random(1).randbytes(2 * BLOCK_BYTES + 3)  # two whole blocks and a stub
    store.put(name="blocks/image.png", data=memoryview(data), content_type="image/png")
    assert store.get(name="blocks/image.png") == data
    blob = store._container.get_blob_client("blocks/image.png")
    assert blob.get_blob_properties().content_settings.content_type == "image/png"
    committed, uncommitted = blob.get_block_list("all")
    assert [b.size for b in committed] == [BLOCK_BYTES, BLOCK_BYTES, 3]
    assert uncommitted == []
    # Written again (a retried upload): the new blocks replace the old, nothing is left over.
    again = random.Random(2).randbytes(BLOCK_BYTES + 1)
    store.put(name="blocks/image.png", data=memoryview(again), content_type="image/png")
    assert store.get(name="blocks/image.png") == again
    assert len(blob.get_block_list("committed")[0]) == 2


def test_small_views_and_bytes_go_in_one_request(store: AzureBlobImageStore):
    store.put(name="blocks/small.png", data=memoryview(b"\x89PNG small"), content_type="image/png")
    store.put(name="blocks/bytes.png", data=b"x" * (BLOCK_BYTES + 1), content_type="image/png")
    assert store.get(name="blocks/small.png") == b"\x89PNG small"
    assert store.get(name="blocks/bytes.png") == b"x" * (BLOCK_BYTES + 1)
    blob = store._container.get_blob_client("blocks/bytes.png")
    assert blob.get_block_list("committed")[0] == []  # one put: no block list of its own


def test_a_conditional_delete_keeps_a_blob_written_again_since_it_was_listed(
    stack: LocalStack, store: AzureBlobImageStore
):
    batches = AzureBlobBatchStore(store, "batches-delete-test")
    batches.ensure_container()
    batches.put(name="incoming/m.jsonl", data=b"first\n", content_type="application/jsonl")
    [(name, etag)] = batches.list_names(prefix="incoming/", limit=10)
    batches.put(name=name, data=b"second\n", content_type="application/jsonl")  # a re-upload

    assert batches.delete_if_unchanged(name=name, etag=etag) is False
    assert batches.get(name=name) == b"second\n"
    [(_, new_etag)] = batches.list_names(prefix="incoming/", limit=10)
    assert new_etag != etag
    assert batches.delete_if_unchanged(name=name, etag=new_etag) is True
    assert batches.get(name=name) is None
    assert batches.delete_if_unchanged(name=name, etag=new_etag) is True  # gone: no error


def test_a_conditional_read_gives_only_the_bytes_of_the_etag_listed(
    stack: LocalStack, store: AzureBlobImageStore
):
    batches = AzureBlobBatchStore(store, "batches-read-test")
    batches.ensure_container()
    batches.put(name="incoming/m.jsonl", data=b"first\n", content_type="application/jsonl")
    [(name, etag)] = batches.list_names(prefix="incoming/", limit=10)

    assert batches.get_if_unchanged(name=name, etag=etag) == b"first\n"
    batches.put(name=name, data=b"second\n", content_type="application/jsonl")  # a re-upload
    assert batches.get_if_unchanged(name=name, etag=etag) is None
    [(_, new_etag)] = batches.list_names(prefix="incoming/", limit=10)
    assert batches.get_if_unchanged(name=name, etag=new_etag) == b"second\n"
    batches.delete_if_unchanged(name=name, etag=new_etag)
    assert batches.get_if_unchanged(name=name, etag=new_etag) is None  # gone
