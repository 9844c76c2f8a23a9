"""Multi-turn conversations: history and files of earlier turns, in Redis.

A later turn can refer to any file of an earlier one (an upload, or an artifact a task
generated, by the name the answer gave it: `task2-3f9a1c0b7e21.png`). History handed to the
LLM is trimmed by (approximate) token count, oldest turns first.
"""

from __future__ import annotations

import redis
from pydantic import BaseModel, Field

from shared.keys import conversation_files_key, conversation_key
from shared.outputs import ArtifactRef


class EarlierText(BaseModel):
    """What a reading task (speech to text, text in an image) got out of a file in a turn."""

    task: str
    file: str  # the file's content hash (ArtifactRef.id)
    text: str


class Turn(BaseModel):
    run_id: str
    user: str
    request: str
    answer: str
    files: dict[str, ArtifactRef] = Field(default_factory=dict)  # name -> file (uploads and generated)
    texts: list[EarlierText] = Field(default_factory=list)  # reused by later turns (planner_service/reuse.py)


def approx_tokens(text: str) -> int:
    """~4 characters per token: close enough for trimming without a tokenizer."""
    return len(text) // 4 + 1


class ConversationStore:
    def __init__(self, client: redis.Redis, prefix: str, conversation_id: str, ttl_s: int):
        self.r = client
        self.id = conversation_id
        self._turns = conversation_key(prefix, conversation_id)
        self._files = conversation_files_key(prefix, conversation_id)
        self._ttl = ttl_s

    def add_turn(self, turn: Turn) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(self._turns, turn.model_dump_json())
        if turn.files:
            pipe.hset(self._files, mapping={name: ref.model_dump_json() for name, ref in turn.files.items()})
        pipe.expire(self._turns, self._ttl)
        pipe.expire(self._files, self._ttl)
        pipe.execute()

    def turns(self) -> list[Turn]:
        return [Turn.model_validate_json(raw) for raw in self.r.lrange(self._turns, 0, -1)]

    def owner(self) -> str | None:
        first = self.r.lindex(self._turns, 0)
        return Turn.model_validate_json(first).user if first else None

    def files(self) -> dict[str, ArtifactRef]:
        return {name: ArtifactRef.model_validate_json(raw) for name, raw in self.r.hgetall(self._files).items()}

    def history(self, max_tokens: int, turns: list[Turn] | None = None) -> list[dict[str, str]]:
        """Earlier turns (`turns`, else read here) as chat messages, newest kept, oldest dropped past
        `max_tokens`."""
        messages: list[dict[str, str]] = []
        budget = max_tokens
        for turn in reversed(self.turns() if turns is None else turns):
            files = f" [files: {', '.join(f'{n} ({r.kind})' for n, r in turn.files.items())}]" if turn.files else ""
            pair = [{"role": "user", "content": turn.request}, {"role": "assistant", "content": turn.answer + files}]
            cost = sum(approx_tokens(m["content"]) for m in pair)
            if cost > budget:
                break
            budget -= cost
            messages[:0] = pair
        return messages
