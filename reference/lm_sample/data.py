"""Streaming from local text shards, the timeout guard on fetches, and the two ways of making token sequences.

`DocumentStream` reads documents (one per line) shard after shard and starts over after the last,
counting what it handed out so that a resumed run skips exactly those. `TimedFetcher` reads ahead in
a background thread and gives every fetch `timeout` seconds: a stalled source (a slow disk, a hung
network mount) raises `DataFetchTimeout` in the training loop instead of hanging it.

The sample-by-sample trainer makes one sequence per document (`document_sample`: truncated or padded
to the sequence length); the chunk trainer packs documents into one token stream (`TokenPacker`).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from reference.lm_sample.tokenizer import Tokenizer

#: Target id the loss ignores (padding after a short document).
IGNORE_INDEX = -100


class DataFetchTimeout(RuntimeError):
    """No document arrived within the fetch timeout."""


class DocumentStream:
    """Documents of the shards in order, one per non-empty line, cycling over the shards for ever."""

    def __init__(self, shards: Sequence[Path], skip: int = 0) -> None:
        if not shards:
            raise ValueError("no shard to stream from")
        self.shards = list(shards)
        self.skip = skip

    def __iter__(self) -> Iterator[str]:
        to_skip = self.skip
        while True:
            for shard in self.shards:
                with open(shard, encoding="utf-8") as lines:
                    for line in lines:
                        text = line.strip()
                        if not text:
                            continue
                        if to_skip:
                            to_skip -= 1
                            continue
                        yield text


_END = object()


class TimedFetcher:
    """An iterator over `source` that waits at most `timeout` seconds per item.

    A daemon thread reads up to `prefetch` items ahead; order is kept. `consumed` counts the items
    handed to the caller (not those read ahead): it is what a checkpoint stores to resume from.
    Never retries a fetch: after a timeout the caller decides (the trainers save and stop).
    """

    def __init__(self, source: Iterator[str] | Sequence[str], timeout: float, prefetch: int = 64,
                 consumed: int = 0) -> None:
        self.timeout = timeout
        self.consumed = consumed
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(source),), daemon=True,
                                        name="lm-data-fetch")
        self._thread.start()

    def _produce(self, items: Iterator[str]) -> None:
        try:
            for item in items:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, which raises it in the training thread
            self._queue.put(exc)
            return
        self._queue.put(_END)

    def __iter__(self) -> "TimedFetcher":
        return self

    def __next__(self) -> str:
        try:
            item = self._queue.get(timeout=self.timeout)
        except queue.Empty:
            raise DataFetchTimeout(f"no document within --fetch-timeout {self.timeout:g} s "
                                   f"(after {self.consumed} documents)") from None
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        self.consumed += 1
        return item

    def close(self) -> None:
        self._stop.set()


def open_stream(shards: Sequence[Path], timeout: float, consumed: int = 0) -> TimedFetcher:
    """Documents from `shards` behind the timeout guard, the first `consumed` ones skipped (resume)."""
    return TimedFetcher(DocumentStream(shards, skip=consumed), timeout, consumed=consumed)


@dataclass
class Batch:
    """Inputs and next-token targets, both (rows, length); `tokens` counts targets the loss uses."""

    inputs: torch.Tensor
    targets: torch.Tensor
    tokens: int


def document_sample(text: str, tokenizer: Tokenizer, seq_len: int) -> Batch:
    """One document as one row: bos + ids + eos cut to seq_len + 1 ids, padded; targets shifted by one."""
    ids = [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id][:seq_len + 1]
    used = len(ids) - 1
    ids += [tokenizer.pad_id] * (seq_len + 1 - len(ids))
    row = torch.tensor(ids, dtype=torch.long)
    targets = row[1:].clone()
    targets[used:] = IGNORE_INDEX
    return Batch(row[:-1].unsqueeze(0), targets.unsqueeze(0), used)


class TokenPacker:
    """Documents concatenated into one token stream (each as ids + eos), handed out in fixed-size pieces.

    Tokens left over after a piece stay for the next one; `state_dict` keeps them for a resume.
    """

    def __init__(self, documents: Iterator[str], tokenizer: Tokenizer) -> None:
        self.documents = documents
        self.tokenizer = tokenizer
        self.buffer: list[int] = []

    def take(self, n: int) -> list[int]:
        """The next `n` tokens of the stream (reads documents until it has them)."""
        while len(self.buffer) < n:
            self.buffer.extend(self.tokenizer.encode(next(self.documents)))
            self.buffer.append(self.tokenizer.eos_id)
        piece, self.buffer = self.buffer[:n], self.buffer[n:]
        return piece

    def state_dict(self) -> dict[str, list[int]]:
        return {"buffer": list(self.buffer)}

    def load_state_dict(self, state: dict[str, list[int]]) -> None:
        self.buffer = list(state["buffer"])


def packed_rows(tokens: Sequence[int], seq_len: int) -> Batch:
    """Packed tokens reshaped into rows of `seq_len`; each row predicts its own next tokens (seq_len - 1 targets)."""
    if len(tokens) % seq_len:
        raise ValueError(f"{len(tokens)} tokens do not fill rows of {seq_len}")
    rows = torch.tensor(tokens, dtype=torch.long).view(-1, seq_len)
    return Batch(rows[:, :-1], rows[:, 1:], rows.shape[0] * (seq_len - 1))
