"""``verify``: every stored file read again and checked against the size and SHA-256 its job recorded.

A damaged job (unreadable ``result.json``, a missing file, a size or checksum that differs) is named with each
bad file and moved under ``store/quarantine/`` with its reason; the next ``run`` regenerates exactly those jobs.
Nothing is deleted. Unlike ``run`` and ``report``, which trust digests remembered by (size, mtime), ``verify``
reads every byte.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from benchmark.store import DamagedJob, check_job, quarantine, stored_jobs


@dataclass
class Verification:
    jobs: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    damaged: list[tuple[str, list[str], Path]] = field(default_factory=list)  # (job key, problems, moved to)


def verify_store(store: Path, progress: bool = False) -> Verification:
    """Check every job under ``store``; set the damaged ones aside. See the module docstring."""
    t0, result, store = time.perf_counter(), Verification(), Path(store)
    for job_dir in tqdm(stored_jobs(store), desc="verify", unit="job", disable=not progress):
        result.jobs += 1
        try:
            record = check_job(job_dir)
        except DamagedJob as err:
            key = job_dir.relative_to(store).as_posix()
            result.damaged.append((key, err.problems, quarantine(store, job_dir, err.problems)))
            continue
        files = record.files
        result.files += len(files) + 1
        result.bytes += sum(entry[0] for entry in files.values())
    result.seconds = time.perf_counter() - t0
    return result
