#!/usr/bin/env python3
"""The local AWS (emulator/local_aws.py) as the bench runs it: unchanged, but for one cost of moto's.

moto 5.2.5's `LogStream.get_log_events` filters and sorts the whole stream on every call, so reading a stream of
1,000,000 events in pages of 10,000 costs about 100 sorts of 1,000,000 objects inside the emulator's one lock: the
figure would be moto's, not the tool's. The emulator writes every stream in timestamp order (`write_logs` keeps a
stream's timestamps non-decreasing), so that sort returns the stream as it is. Here a call without a time window
slices the stream directly, after checking (incrementally) that it is in order; anything else goes to moto's own
code. Answers, tokens and paging are the same as moto's. Every tool in the bench talks to this same server.

    python bench/emulator.py --port 0 --exit-on-stdin-eof      # same flags as emulator/local_aws.py

The emulator directory comes from $LOCAL_AWS_EMULATOR_DIR, else <repo>/emulator.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("LOCAL_AWS_EMULATOR_DIR") or os.path.join(ROOT, "emulator"))

import local_aws  # noqa: E402  (the emulator itself; importing it patches moto as usual)
from moto.logs.models import LogStream  # noqa: E402

_moto_get_log_events = LogStream.get_log_events


def _in_order(stream) -> bool:
    """Whether the stream's events are in timestamp order; checks only what was added since the last call."""
    events = stream.events
    checked = getattr(stream, "_bench_checked", 0)
    if checked > len(events):  # the list was replaced
        checked = 0
    ok = getattr(stream, "_bench_in_order", True) or checked == 0
    for i in range(max(checked, 1), len(events)):
        if events[i].timestamp < events[i - 1].timestamp:
            ok = False
            break
    stream._bench_checked = len(events)
    stream._bench_in_order = ok
    return ok


def get_log_events(self, start_time, end_time, limit, next_token, start_from_head):
    if start_time or end_time or not _in_order(self):
        return _moto_get_log_events(self, start_time, end_time, limit, next_token, start_from_head)
    if limit is None:
        limit = 10000
    direction, index = None, 0
    if next_token is not None:
        try:
            direction, index = next_token[0], int(next_token[2:])
        except Exception:  # moto's own error for a bad token
            return _moto_get_log_events(self, start_time, end_time, limit, next_token, start_from_head)
    events = self.events
    limit_index = limit - 1
    final_index = len(events) - 1
    if direction is None:
        if start_from_head:
            start_index, end_index = 0, limit_index
        else:
            end_index = final_index
            start_index = end_index - limit_index
    elif direction == "f":
        start_index = index + 1
        end_index = start_index + limit_index
    elif direction == "b":
        end_index = index - 1
        start_index = end_index - limit_index
    else:
        return _moto_get_log_events(self, start_time, end_time, limit, next_token, start_from_head)
    if start_index < 0:
        start_index = 0
    elif start_index > final_index:
        return [], f"b/{final_index:056d}", f"f/{final_index:056d}"
    if end_index > final_index:
        end_index = final_index
    elif end_index < 0:
        return [], f"b/{0:056d}", f"f/{0:056d}"
    page = [e.to_response_dict() for e in events[start_index : end_index + 1]]
    return page, f"b/{start_index:056d}", f"f/{end_index:056d}"


LogStream.get_log_events = get_log_events

if __name__ == "__main__":
    local_aws.main()
