"""The history checker: its checks on made-up histories (each anomaly is found), and the short
run over real processes CI makes (`history_run.py`: kills -9, pauses and network cuts of three
nodes under idempotent acks=all producers and two clients' consumers; the long run is the
same with more seconds, README.md's "A cluster").
"""

from __future__ import annotations

import history
import history_run


def event(kind: str, **fields) -> dict:
    return {"type": kind, **fields}


def clean_history() -> list[dict]:
    return [
        event("send", producer="p", value="p-0"), event("send", producer="p", value="p-1"),
        event("ack", producer="p", value="p-0", partition=0, offset=0),
        event("ack", producer="p", value="p-1", partition=0, offset=1),
        event("read", consumer="c", partition=0, offset=0, value="p-0"),
        event("read", consumer="c", partition=0, offset=1, value="p-1"),
        event("hw", partition=0, offset=2),
        event("final", partition=0, offset=0, value="p-0"),
        event("final", partition=0, offset=1, value="p-1"),
    ]


def kinds(events: list[dict]) -> set[str]:
    return {a.split(":", 1)[0] for a in history.check(events).anomalies}


def test_the_checks_pass_a_clean_history_and_name_each_anomaly():
    assert history.check(clean_history()).clean
    h = clean_history()
    h[-1] = event("final", partition=0, offset=1, value="p-0")
    assert {"lost write", "inconsistent offset", "duplicate"} <= kinds(h)
    h = clean_history()[:-1]
    assert {"lost write", "skipped in the final read"} <= kinds(h)
    h = clean_history() + [event("read", consumer="c", partition=0, offset=0, value="p-0")]
    assert kinds(h) == {"non-monotonic read"}
    h = [e for e in clean_history() if not (e["type"] == "read" and e["offset"] == 0)]
    assert kinds(h) == {"skipped read"}
    h = [e for e in clean_history() if not (e["type"] == "send" and e["value"] == "p-1")]
    assert kinds(h) == {"never sent"}
    h = clean_history() + [event("reset", client="c", error="offset out of range")]
    assert kinds(h) == {"offset reset"}
    # An acknowledgement without an offset (librdkafka's implicit ack) needs its record
    # somewhere in its partition, and names no offset to disagree about.
    implicit = [dict(e, offset=None) if e["type"] == "ack" else e for e in clean_history()]
    assert history.check(implicit).clean
    implicit = [e for e in implicit if not (e["type"] == "final" and e["value"] == "p-1")]
    assert "lost write" in kinds(implicit)


def test_a_short_run_under_kills_pauses_and_cuts_has_a_clean_history(tmp_path, request):
    verdict, summary = history_run.execute(tmp_path / "run", seconds=45, seed=11)
    print(summary)
    assert verdict.clean, "\n".join(verdict.anomalies)
    assert verdict.counts.get("ack", 0) > 1000, summary
    assert verdict.counts.get("read", 0) > 1000, summary
    assert summary["faults"].get("kill", 0) >= 1 and summary["faults"].get("pause", 0) >= 1
    if summary["partitions"] == "network namespaces":
        assert summary["faults"].get("partition", 0) >= 1
