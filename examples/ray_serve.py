"""A saved learner behind Ray Serve, batching requests at the operating point it was chosen for.

Optimize for throughput and save the learner first::

    learner = speedster_dist.optimize_model(
        model, samples, objective="throughput", batch_sizes=[1, 8, 32], concurrency=[1, 2],
        latency_budget_ms=200,
    )
    learner.save("learner")

then serve it (``pip install "ray[serve]"``)::

    python examples/ray_serve.py learner [--trust-code]

Each replica loads the learner, which picks the winner of the machine it runs on, and sets
``@serve.batch`` from that winner's operating point: a Serve batch holds ``batch_size x
concurrency`` requests (``run_many`` keeps ``concurrency`` calls of ``batch_size`` requests in
flight through the backend's own runner), and waits for it no longer than those requests take
to arrive at the throughput measured there (the batch-fill wait the point's p99 counted).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ray import serve

from speedster_dist import LearnerMetadata, load_model

# A Serve batch never waits longer than this for its requests, whatever the measured rate.
MAX_WAIT_S = 0.1


def serve_batching(point: dict[str, Any]) -> tuple[int, float]:
    """``(max_batch_size, batch_wait_timeout_s)`` of ``@serve.batch`` for an operating point
    (``learner.operating_point()``)."""
    size = int(point["batch_size"]) * int(point["concurrency"])
    throughput = point.get("throughput")
    wait = size / throughput if throughput else 0.0
    return size, min(wait, MAX_WAIT_S)


@serve.deployment
class ServedLearner:
    """One replica: the learner, called with one request per Serve call (what the model's
    ``__call__`` takes: a dict of tensors, a tuple of them or one tensor)."""

    def __init__(self, path: str, trust_code: bool = False) -> None:
        self.learner = load_model(path, trust_code=trust_code)
        # Set here, not in the decorator: the winner (and its point) is this replica's.
        self.batching = serve_batching(self.learner.operating_point())
        self.infer.set_max_batch_size(self.batching[0])
        self.infer.set_batch_wait_timeout_s(self.batching[1])
        self.batch_sizes: list[int] = []

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)  # set in __init__, see above
    async def infer(self, requests: list[Any]) -> list[Any]:
        self.batch_sizes.append(len(requests))
        # Off the event loop: run_many blocks while the calls run (outside the GIL).
        return await asyncio.to_thread(self.learner.run_many, requests)

    async def __call__(self, request: Any) -> Any:
        return await self.infer(request)

    def config(self) -> dict[str, Any]:
        """What this replica serves with (for people and tests)."""
        size, wait = self.batching
        point = self.learner.operating_point()
        return {"max_batch_size": size, "batch_wait_timeout_s": wait, "operating_point": point}

    def batches(self) -> list[int]:
        """The size of every batch served so far."""
        return list(self.batch_sizes)


def app(path: str, trust_code: bool = False) -> Any:
    """The application: one deployment, taking as many requests at once as the largest
    operating point of the artifact's winners needs (Serve warns below that)."""
    entries = LearnerMetadata.read(path).entries()
    largest = max(serve_batching(e.operating_point())[0] for e in entries.values())
    options = {"max_ongoing_requests": max(2 * largest, 5)}
    return ServedLearner.options(**options).bind(path, trust_code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("learner", help="a learner saved with HardwareKeyedLearner.save")
    parser.add_argument("--trust-code", action="store_true", help="load TorchScript winners")
    args = parser.parse_args()
    handle = serve.run(app(args.learner, args.trust_code))
    print(handle.config.remote().result())
    input("serving on Ray Serve; press Enter to stop\n")
    serve.shutdown()


if __name__ == "__main__":
    main()
