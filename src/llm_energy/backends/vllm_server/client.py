"""An asynchronous OpenAI completions client (aiohttp) that replays requests at set times and
records, per request, when it was sent and when its first and last tokens came back.

Each request is a token-id prompt with ``max_tokens == min_tokens`` and ``ignore_eos``, so it
generates exactly its length, streamed as server-sent events with usage in every chunk
(``stream_options``: ``include_usage``, ``continuous_usage_stats``): a chunk's cumulative
``completion_tokens`` counts the tokens it brought, however many. Requests are sent on
schedule however many are in flight (no connection limit), as users would send them. A request
that fails (an HTTP error, a broken stream, fewer tokens than asked) is recorded with its
error, never left out.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llm_energy.measure.serving import RequestRecord

# Longest silence on a request's stream before it counts as failed.
DEFAULT_READ_TIMEOUT_S = 600.0
# A line in the job's log this often while a replay runs.
PROGRESS_EVERY_S = 30.0


def completion_payload(model: str, prompt: list[int], tokens: int) -> dict[str, Any]:
    """The request body of one fixed-length, greedy, streamed completion."""
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": tokens,
        "min_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }


@dataclass
class StreamTimer:
    """Reads one response's server-sent events as they arrive and fills its record: the first
    chunk that carries a choice is the first token, the chunk that finishes it the last."""

    record: RequestRecord
    finished: bool = False
    done: bool = False
    _buffer: str = ""

    def feed(self, data: bytes | str, now: float) -> None:
        """Bytes of the stream as received at ``now`` (any split: whole events are parsed)."""
        self._buffer += data.decode() if isinstance(data, bytes) else data
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            line = line.rstrip("\r")
            if line.startswith("data:"):
                self._event(line[5:].strip(), now)

    def _event(self, payload: str, now: float) -> None:
        r = self.record
        if payload == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except json.JSONDecodeError:
            self._fail(f"unreadable event {payload[:80]!r}")
            return
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            self._fail(f"server error in stream: {str(message)[:200]}")
            return
        choices = chunk.get("choices") or []
        usage = chunk.get("usage") or {}
        counted = usage.get("completion_tokens")
        if choices:
            if math.isnan(r.first_token_s):
                r.first_token_s = now
            r.last_token_s = now
            if counted is not None:
                r.output_tokens = int(counted)
            else:
                ids = choices[0].get("token_ids")
                r.output_tokens += len(ids) if ids else 1
            if choices[0].get("finish_reason"):
                self.finished = True
        elif counted is not None:
            r.output_tokens = int(counted)  # the final usage chunk: the count of record

    def _fail(self, message: str) -> None:
        if not self.record.error:
            self.record.error = message

    def close(self, now: float) -> None:
        """The response ended at ``now``: a request that did not finish with all its tokens
        fails."""
        r = self.record
        r.done_s = now
        if r.error:
            return
        if not self.finished:
            self._fail(f"stream ended after {r.output_tokens} tokens without finishing")
        elif r.output_tokens != r.expected_tokens:
            self._fail(f"generated {r.output_tokens} tokens instead of {r.expected_tokens}")


async def _send(
    session: Any, url: str, payload: dict[str, Any], record: RequestRecord, read_timeout_s: float
) -> None:
    import aiohttp

    timer = StreamTimer(record)
    record.sent_s = time.perf_counter()
    try:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=read_timeout_s)
        async with session.post(url, json=payload, timeout=timeout) as resp:
            if resp.status != 200:
                body = (await resp.text())[:200].replace("\n", " ")
                timer._fail(f"HTTP {resp.status}: {body}")
            else:
                async for data in resp.content.iter_any():
                    timer.feed(data, time.perf_counter())
    except asyncio.TimeoutError:
        timer._fail(f"no data for {read_timeout_s:g} s")
    except aiohttp.ClientError as exc:
        timer._fail(f"{type(exc).__name__}: {exc}"[:200])
    timer.close(time.perf_counter())


def progress_line(records: Sequence[RequestRecord], elapsed_s: float) -> str:
    sent = sum(1 for r in records if not math.isnan(r.sent_s))
    done = sum(1 for r in records if not math.isnan(r.done_s))
    failed = sum(1 for r in records if r.error)
    return (
        f"replay: {sent}/{len(records)} requests sent, {sent - done} in flight, {done} done "
        f"({failed} failed) after {elapsed_s:.0f} s"
    )


async def _report(
    records: Sequence[RequestRecord], log: Callable[[str], None], every_s: float
) -> None:
    t0 = time.perf_counter()
    while True:
        await asyncio.sleep(every_s)
        log(progress_line(records, time.perf_counter() - t0))


async def replay_async(
    base_url: str,
    model: str,
    prompts: Sequence[list[int]],
    output_tokens: Sequence[int],
    send_times_s: Sequence[float],
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> list[RequestRecord]:
    """Send request i at ``send_times_s[i]`` seconds after the first, and wait for all; with
    ``log``, a progress line every ``progress_every_s``."""
    import aiohttp

    if not len(prompts) == len(output_tokens) == len(send_times_s):
        raise ValueError("one output length and one send time per prompt")
    url = f"{base_url}/v1/completions"
    order = sorted(range(len(prompts)), key=lambda i: send_times_s[i])
    records = [
        RequestRecord(i, float(send_times_s[i]), int(output_tokens[i])) for i in range(len(prompts))
    ]
    connector = aiohttp.TCPConnector(limit=0)  # no cap on requests in flight
    reporter = asyncio.create_task(_report(records, log, progress_every_s)) if log else None
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        t0 = time.perf_counter()
        for i in order:
            delay = t0 + send_times_s[i] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            records[i].scheduled_s = t0 + send_times_s[i]
            payload = completion_payload(model, list(prompts[i]), int(output_tokens[i]))
            tasks.append(
                asyncio.create_task(_send(session, url, payload, records[i], read_timeout_s))
            )
        await asyncio.gather(*tasks)
    if reporter is not None:
        reporter.cancel()
    return records


def replay(
    base_url: str,
    model: str,
    prompts: Sequence[list[int]],
    output_tokens: Sequence[int],
    send_times_s: Sequence[float],
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
) -> list[RequestRecord]:
    """:func:`replay_async` from synchronous code."""
    return asyncio.run(
        replay_async(base_url, model, prompts, output_tokens, send_times_s, read_timeout_s, log)
    )
