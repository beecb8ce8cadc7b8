#!/usr/bin/env python3
"""Writes seed inputs for the `journal_open`, `entry_decoder` and `config` targets
into corpus/<target>/ (random bytes never carry a valid CRC-32, so the
fuzzer starts from real journal lines and checkpoints). Run from fuzz/."""

import os
import struct
import zlib

BODY = '"time":1,"table":"t","op":"delete","key":"k{seq}","fingerprint":"00000000000000ff"'


def line(seq, batch=None, prev=None):
    head = '{"seq":%d,' % seq
    if batch is not None:
        head += '"batch":%d,' % batch
        if prev is not None:
            head += '"prev":%d,' % prev
    body = BODY.format(seq=seq)
    crc = zlib.crc32((head + body + "}").encode())
    return (head + body + ',"crc":"%08x"}\n' % crc).encode()


def checkpoint(text, checksummed=True, gen=1):
    if not checksummed:
        return text.encode()
    text += "gen %d\n" % gen
    return (text + "crc %08x\n" % zlib.crc32(text.encode())).encode()


def layout(flags, cp, second_seq, first, second):
    return (bytes([flags]) + struct.pack("<H", len(cp)) + cp + struct.pack("<Q", second_seq)
            + struct.pack("<H", len(first)) + first + second)


def segment(seqs, batch_of=lambda s: None, prev_of=lambda s: None):
    return b"".join(line(s, batch_of(s), prev_of(s)) for s in seqs)


def main():
    seeds = {}
    one = segment([1, 2, 3], lambda s: 1)
    two = segment([4, 5], lambda s: 4)
    end_of_2 = len(segment([1, 2], lambda s: 1))
    for name, flags, cp in [
        ("bare", 1 | 8, checkpoint("2\n", False)),
        ("slotted", 1 | 2 | 8, checkpoint("2\n")),
        ("slotted-split", 1 | 2 | 4 | 8, checkpoint("2\n") + checkpoint("3\n", gen=2)),
        ("resume", 1 | 8, checkpoint("2\n@2 1 %d\n" % end_of_2, False)),
        ("resume-slotted", 1 | 2 | 8, checkpoint("3\nt 4\n+5\n@2 1 %d\n" % end_of_2)),
        ("no-checkpoint", 8, b""),
    ]:
        seeds["journal_open/" + name] = layout(flags, cp, 4, one, two)
    gap = segment([1, 2], lambda s: 1) + line(5, 5, 2) + line(6, 5)
    seeds["journal_open/gap"] = layout(1, checkpoint("1\n"), 0, gap, b"")
    seeds["journal_open/torn"] = layout(1, checkpoint("0\n"), 0, one + line(4, 4)[:20], b"")
    seeds["journal_open/hole"] = layout(1, checkpoint("0\n"), 0,
                                        one + b"\0" * 40 + b"\n" + line(5, 4), b"")
    seeds["journal_open/unmarked"] = layout(16 | 8, b"", 1, b"", segment([1, 2, 3]))
    for s in (1, 7):
        seeds["entry_decoder/plain-%d" % s] = line(s).rstrip(b"\n")
        seeds["entry_decoder/batch-%d" % s] = line(s, s).rstrip(b"\n")
        seeds["entry_decoder/gap-%d" % s] = line(s, s, s - 1).rstrip(b"\n")
    configs = [
        '[default]\nprimary = "mysql://app:pw@db/shop?deadline_ms=400"\n'
        'caches = [{ url = "memory://?capacity=1000&ttl=60s&stale_for=10m" }, '
        '{ url = "memcache://10.0.0.5:11211,10.0.0.6:11211?timeout_ms=200", policy = "write_through" }]\n'
        'fallback = "file://data/journal?durability=10ms"\nfleet_lease = "20ms"\nstale_if_error = true\n'
        'herd_wait = "2s"\n[default.breaker]\nwindow = 20\nfailure_rate = 0.5\n',
        '[default]\nprimary = "postgres://app@pg/test"\nfallback = "nats://127.0.0.1:4222?stream=octopus"\n'
        '[models.sessions]\nprimary = "sqlite::memory:"\ncaches = []\n'
        '\0OCTOPUS__DEFAULT__PRIMARY=sqlite:///tmp/x.db\nOCTOPUS__MODELS__ORDERS__FALLBACK=file://j\n',
    ]
    for n, text in enumerate(configs):
        seeds["config/seed-%d" % n] = text.encode()
    for path, data in seeds.items():
        os.makedirs(os.path.join("corpus", os.path.dirname(path)), exist_ok=True)
        with open(os.path.join("corpus", path), "wb") as f:
            f.write(data)
    print("wrote %d seeds" % len(seeds))


if __name__ == "__main__":
    main()
