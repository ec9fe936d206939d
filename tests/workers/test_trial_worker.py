"""The worker's side of a trial (workers/trial_worker.py), in this process."""

from __future__ import annotations

from lrsearch.search.catalog import complete_config
from lrsearch.workers.executor import TrialRun
from lrsearch.workers.trial_worker import TrialWorker


def test_quick_rounds_are_sent_in_batches_but_a_decision_point_at_once() -> None:
    worker = TrialWorker(1, 0, own_process=False)
    config = complete_config({"lr": 0.01, "optimizer": "sgd", "schedule": "constant"}, 30)
    worker.resume("k")  # the service's verdict at epoch 3, given ahead
    batches = list(worker.run_batches("k", TrialRun("synthetic", config, epochs=30, seed=0, pause_after=(3,))))
    epochs = [r["epoch"] for batch in batches for r in batch]
    assert epochs == list(range(30))  # every result, once, in order
    assert len(batches) < 30  # a synthetic epoch takes a millisecond or two: they travel together
    assert any(batch[-1]["epoch"] == 3 for batch in batches)  # the decision point was not held back
