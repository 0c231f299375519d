"""The main path on every backend: submit, claim, start, ack."""

from run_mailbox.domain import DispatchStatus, RunStatus


def test_a_submitted_run_is_claimed_started_and_acked(service, clock):
    queued = service.submit("thread-1", "run-1")
    claimed = service.claim("thread-1", consumer_id="worker-1")
    assert claimed is not None and claimed.dispatch_id == queued.dispatch_id
    service.record_start(queued.dispatch_id, claim_token=claimed.claim_token)
    clock.advance(10)
    acked = service.ack(queued.dispatch_id, claim_token=claimed.claim_token)
    assert acked.status is DispatchStatus.ACKED
    assert acked.completed_at == clock.now
    assert service.get_run("run-1").status is RunStatus.DONE
