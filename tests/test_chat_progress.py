"""The progress lines a chat UI shows (reasoning_content), from a run's events in the order a
streamed plan produces them: a task may start before the whole plan is written."""

from __future__ import annotations

from planner_service.api.chat_progress import ChatProgress


def test_an_early_task_of_a_streamed_plan_is_named_before_the_plan_is_whole() -> None:
    progress = ChatProgress()
    events = [
        {"type": "planning"},
        {"type": "task", "node": 0, "status": "queued", "early": True, "task": "image-to-image", "ts": 1.0},
        {"type": "task", "node": 0, "status": "running", "model": "hgq/pillow-image-filters", "attempt": 1, "ts": 1.5},
        {"type": "planned", "plan": [{"id": 0, "task": "image-to-image"}, {"id": 1, "task": "image-to-text"}]},
        {"type": "task", "node": 0, "status": "succeeded", "ts": 1.6},
        {"type": "task", "node": 1, "status": "running", "model": "vit-gpt2", "attempt": 2, "ts": 2.0},
        {"type": "task", "node": 1, "status": "failed", "ts": 3.25},
    ]
    lines = [line for ev in events if (line := progress.line(ev)) is not None]
    assert lines == [
        "Planning the request...\n",
        "Task 0 image-to-image started with hgq/pillow-image-filters\n",
        "Plan: 2 tasks (0 image-to-image, 1 image-to-text)\n",
        "Task 0 image-to-image done in 0.1 s\n",
        "Task 1 image-to-text started with vit-gpt2 (attempt 2)\n",
        "Task 1 image-to-text failed in 1.2 s\n",
    ]
