"""A pbt member's segment (search/strategies/_pbt.py): a training that continues where another
ended.

It starts from the checkpoint its parent segment left at its stop (its own member's previous
segment, or a better member's after an exploit), takes its own config's rate and settings, and
trains from its start to its stop evaluation. Its own checkpoint at the stop stays until the job
ends: the next generation continues from it. Segments are short, so a restart or a lost worker
trains the segment again from its parent's checkpoint.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lrsearch.search.strategies._pbt import member_config, member_of
from lrsearch.service.trial_lifecycle import TrainingTrial
from lrsearch.workers.executor import TrialRun


class SegmentTrial(TrainingTrial):
    heard_by_rule = False  # the population decides, not an early-stopping rule

    @property
    def entry(self) -> dict[str, Any]:
        entry = member_of(self.item.config)
        assert entry is not None, "a segment's config carries its pbt entry"
        return entry

    def span(self) -> tuple[int, int]:
        return int(self.entry["start"]), int(self.entry["stop"])

    def run(self) -> None:
        try:
            self.checkpoint = self.parent_checkpoint()
        except LookupError as exc:
            self.mark_finished("failed", str(exc))
            self.job.trial_ended(self.outcome("failed"), ranked=False)
            return
        self.item.resume = False  # a segment that ran before trains again from its parent's checkpoint
        self.clear_metrics()
        super().run()

    def outcome(self, status: str) -> Any:
        from lrsearch.search.decisions import trial_outcome

        return trial_outcome(self.item.number, self.item.config, status, [])

    def parent_checkpoint(self) -> bytes | None:
        """Where the parent segment stopped; None for a first segment (it trains from scratch)."""
        parent = self.entry["parent"]
        if parent is None:
            return None
        saved = self.job.runner.checkpoints.load(self.job.job_id, int(parent))
        if saved is None or saved[0] != self.first:
            raise LookupError(f"trial {parent}'s checkpoint at evaluation {self.first} is gone: nothing to continue")
        return saved[1]

    def restore_point(self) -> tuple[bytes | None, list[float | None]]:
        return self.parent_checkpoint(), self.clear_metrics()

    def forget_checkpoint(self) -> None:
        """Kept: the next generation continues from it (the job's end removes every one)."""

    def trial_run(self) -> TrialRun:
        run = super().trial_run()
        return replace(run, config=member_config(self.item.config), inherit=self.checkpoint is not None,
                       stop_at=self.stop)
