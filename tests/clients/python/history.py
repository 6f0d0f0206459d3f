"""The history checker's checks: what a run of real producers and consumers recorded, judged as
Jepsen's Kafka workload judges it (jepsen.tests.kafka: lost writes, duplicates, inconsistent
offsets, non-monotonic and skipped reads), with nothing about how the history was made.

A history is a list of events, each a dict with a "type":

- ``send``:  a producer handed record ``value`` to its client.
- ``ack``:   the client reported ``value`` acknowledged (acks=all) at ``partition``/``offset``;
             ``offset`` is None when the client acknowledged it without one (librdkafka's
             idempotent producer acknowledges a batch implicitly when a later one of the same
             producer succeeds, `rd_kafka_dr_implicit_ack`): such a record must be in its
             partition, at an offset nobody named.
- ``fail``:  the client reported ``value`` not acknowledged (``error``): indeterminate, the
             record may or may not be in the log.
- ``read``:  consumer ``consumer`` read ``value`` at ``partition``/``offset``; one consumer is
             one client instance, reading every partition from offset 0 by assignment.
- ``reset``: consumer ``client`` found its position out of range (``error``).
- ``final``: after the faults ended, a fresh consumer read ``value`` at ``partition``/``offset``
             while reading every partition from 0 up to its high watermark (``hw`` events give
             the high watermark each partition was read to).

Values are unique per send, so a value names one send.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Verdict:
    """What the checks found; `anomalies` is empty for a clean history."""

    anomalies: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, detail: str) -> None:
        self.anomalies.append(f"{kind}: {detail}")

    @property
    def clean(self) -> bool:
        return not self.anomalies


# A clean history can still be long; a broken one needs only its first few examples named.
EXAMPLES_MAX = 10


def check(events: list[dict]) -> Verdict:
    verdict = Verdict()
    by_type: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_type[event["type"]].append(event)
    verdict.counts = {kind: len(of_kind) for kind, of_kind in sorted(by_type.items())}
    acks = by_type["ack"]
    final = by_type["final"]
    high_watermarks = {e["partition"]: e["offset"] for e in by_type["hw"]}

    # No two different records at one offset: every reader, the final read and the
    # acknowledgements agree on what each (partition, offset) holds.
    at: dict[tuple[int, int], tuple[str, str]] = {}
    inconsistent = []
    for event in [*acks, *by_type["read"], *final]:
        if event["offset"] is None:
            continue
        key = (event["partition"], event["offset"])
        who = f"{event['type']} by {event.get('consumer', event.get('producer', 'final'))}"
        seen = at.setdefault(key, (event["value"], who))
        if seen[0] != event["value"]:
            inconsistent.append(f"{key[0]}/{key[1]}: {seen[0]!r} ({seen[1]}) and "
                                f"{event['value']!r} ({who})")
    for detail in inconsistent[:EXAMPLES_MAX]:
        verdict.add("inconsistent offset", detail)

    # The final read covers each partition from 0 to its high watermark with no gap.
    final_by_partition: dict[int, dict[int, str]] = defaultdict(dict)
    for event in final:
        final_by_partition[event["partition"]][event["offset"]] = event["value"]
    for partition, hw in sorted(high_watermarks.items()):
        missing = [o for o in range(hw) if o not in final_by_partition[partition]]
        if missing:
            verdict.add("skipped in the final read",
                        f"partition {partition}: {len(missing)} offsets below the high "
                        f"watermark {hw} not read, first {missing[:EXAMPLES_MAX]}")

    # No lost acknowledged write: each is in the final read where it was acknowledged (in
    # its partition, for one acknowledged without an offset).
    final_values = {partition: set(offsets.values())
                    for partition, offsets in final_by_partition.items()}

    def kept(ack: dict) -> bool:
        if ack["offset"] is None:
            return ack["value"] in final_values.get(ack["partition"], set())
        return final_by_partition[ack["partition"]].get(ack["offset"]) == ack["value"]

    lost = [e for e in acks if not kept(e)]
    for e in lost[:EXAMPLES_MAX]:
        verdict.add("lost write", f"{e['value']!r} acknowledged at {e['partition']}/"
                                  f"{e['offset']} is not there in the final read")
    if len(lost) > EXAMPLES_MAX:
        verdict.add("lost write", f"{len(lost)} acknowledged records lost in all")

    # No duplicate from an idempotent producer: each value at most once in the log.
    places: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for partition, offsets in final_by_partition.items():
        for offset, value in offsets.items():
            places[value].append((partition, offset))
    duplicated = {v: p for v, p in places.items() if len(p) > 1}
    for value, where in list(duplicated.items())[:EXAMPLES_MAX]:
        verdict.add("duplicate", f"{value!r} is in the log {len(where)} times: {sorted(where)}")

    # Nothing in the log that no producer sent.
    sent = {e["value"] for e in by_type["send"]}
    unknown = [v for v in places if v not in sent]
    for value in unknown[:EXAMPLES_MAX]:
        verdict.add("never sent", f"{value!r} is in the log but no producer sent it")

    # Every consumer's reads of a partition go up one offset at a time: never back
    # (non-monotonic) and never over an offset (skipped; the log has no gaps: no
    # transactions, no compaction).
    by_reader: dict[tuple[str, int], list[int]] = defaultdict(list)
    for event in by_type["read"]:
        by_reader[(event["consumer"], event["partition"])].append(event["offset"])
    backwards, skipped = [], []
    for (consumer, partition), offsets in sorted(by_reader.items()):
        if offsets and offsets[0] != 0:
            skipped.append(f"{consumer} started partition {partition} at {offsets[0]}, not 0")
        for before, after in zip(offsets, offsets[1:]):
            if after <= before:
                backwards.append(f"{consumer} read partition {partition} at {before} then "
                                 f"{after}")
            elif after != before + 1:
                skipped.append(f"{consumer} read partition {partition} at {before} then "
                               f"{after}")
    for detail in backwards[:EXAMPLES_MAX]:
        verdict.add("non-monotonic read", detail)
    for detail in skipped[:EXAMPLES_MAX]:
        verdict.add("skipped read", detail)

    # A consumer's position is never out of range (with auto.offset.reset off, a reset is an
    # error the client reports): a log that shrank below what a reader was shown did.
    for event in by_type["reset"][:EXAMPLES_MAX]:
        verdict.add("offset reset", f"{event['client']}: {event['error']}")
    return verdict
