import pytest

torch = pytest.importorskip("torch")

from hardstat.train.queue import KeyQueue  # noqa: E402


def test_initial_slots_have_no_provenance_and_unit_keys() -> None:
    q = KeyQueue(8, 4, generator=torch.Generator().manual_seed(0))
    assert (q.sample_ids == -1).all() and (q.labels == -1).all() and (q.steps == -1).all()
    assert torch.allclose(q.keys.norm(dim=1), torch.ones(8))


def test_provenance_follows_keys_through_wraparound() -> None:
    q = KeyQueue(6, 2)
    for step in range(5):  # 5 batches of 2 into 6 slots: wraps around
        ids = torch.tensor([10 * step, 10 * step + 1])
        keys = torch.stack([torch.full((2,), float(i)) for i in ids.tolist()])
        q.enqueue(keys, ids, ids % 3, step)
    # slots hold batches 3, 4, 2 (oldest overwritten first); keys encode their sample id
    assert q.sample_ids.tolist() == [30, 31, 40, 41, 20, 21]
    assert q.steps.tolist() == [3, 3, 4, 4, 2, 2]
    assert q.labels.tolist() == [0, 1, 1, 2, 2, 0]
    assert torch.equal(q.keys[:, 0], q.sample_ids.float())
    assert int(q.ptr) == 4


def test_provenance_survives_state_dict_round_trip() -> None:
    q = KeyQueue(4, 3)
    q.enqueue(torch.ones(2, 3), torch.tensor([5, 6]), torch.tensor([1, 2]), 7)
    r = KeyQueue(4, 3)
    r.load_state_dict(q.state_dict())
    for name in ("keys", "sample_ids", "labels", "steps", "ptr"):
        assert torch.equal(getattr(q, name), getattr(r, name))


def test_batch_must_divide_queue() -> None:
    q = KeyQueue(6, 2)
    with pytest.raises(ValueError, match="multiple"):
        q.enqueue(torch.ones(4, 2), torch.arange(4), torch.arange(4), 0)
