#!/usr/bin/env python3
"""Write a synthetic rstshim log of about SIZE megabytes, for `report`
throughput tests.  Lines follow the schema; the mix is that of a busy server
with a few faulty code paths: mostly accept + clean close pairs, some flagged
closes, many distinct peers (to exercise the bounded tables), the odd error
line and, with --junk, some damaged lines.

    genlog.py SIZE_MB OUT [--junk] [--seed N]
"""
import argparse
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("size_mb", type=float)
    ap.add_argument("out")
    ap.add_argument("--junk", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    target = int(a.size_mb * 1e6)
    written = 0
    mono = 10**12
    causes = [["unread_data"], ["linger_zero"], ["immediate_close"], ["recv_timeout"]]
    with open(a.out, "w") as f:
        chunk = []
        while written < target:
            mono += rnd.randrange(1000, 200000)
            sec = mono // 10**9
            ts = "2026-11-21T%02d:%02d:%02d.%06dZ" % (
                (sec // 3600) % 24, (sec // 60) % 60, sec % 60, (mono // 1000) % 10**6)
            pid = 1000 + rnd.randrange(8)
            fd = 5 + rnd.randrange(200)
            host = "10.%d.%d.%d" % (rnd.randrange(4), rnd.randrange(256), rnd.randrange(256))
            peer = "%s:%d" % (host, rnd.randrange(32768, 60999))
            local = "127.0.0.1:%d" % (8080 + rnd.randrange(3))
            common = ('"ts":"%s","mono_ns":%d,"event":"%%s","pid":%d,"tid":%d,'
                      '"comm":"server","fd":%d,' % (ts, mono, pid, pid, fd))
            r = rnd.random()
            if r < 0.45:
                line = ('{' + common % "accept" + '"local":"%s","peer":"%s","cookie":%d,'
                        '"listen_fd":3}' % (local, peer, mono & 0xffffff))
            elif r < 0.97:
                flags = rnd.choice(causes) if rnd.random() < 0.05 else []
                rst = "true" if flags and flags[0] in ("unread_data", "linger_zero") else "false"
                line = ('{' + common % "close" + '"via":"close","role":"accepted",'
                        '"local":"%s","peer":"%s","cookie":%d,"unread_bytes":%d,"flags":[%s],'
                        '"rst":%s,"duration_ms":%.6f,"bytes_read":%d,"bytes_written":%d,'
                        '"state":"ESTABLISHED","rtt_us":%d}' % (
                            local, peer, mono & 0xffffff, 17 if rst == "true" else 0,
                            ",".join('"%s"' % x for x in flags), rst,
                            rnd.lognormvariate(2, 2), rnd.randrange(5000),
                            rnd.randrange(50000), rnd.randrange(20, 400)))
            elif r < 0.985:
                line = ('{' + common % "peer_reset" + '"local":"%s","peer":"%s","cookie":1,'
                        '"errno":"ECONNRESET","call":"recv"}' % (local, peer))
            elif r < 0.995:
                line = ('{' + common % "accept_error" + '"cookie":1,"listen_fd":3,'
                        '"errno":"EMFILE","rlimit_nofile":1024,"suppressed":%d}'
                        % rnd.randrange(100))
            else:
                line = ('{' + common % "close" + '"via":"close","role":"listener",'
                        '"local":"%s","peer":null,"cookie":1,"unread_bytes":null,'
                        '"flags":["pending_connections"],"rst":true,"pending":%d,'
                        '"backlog":128}' % (local, 1 + rnd.randrange(10)))
            if a.junk and rnd.random() < 0.001:
                line = rnd.choice([line[: len(line) // 2], "not json at all",
                                   '{"msg":"hello from the app"}'])
            chunk.append(line)
            written += len(line) + 1
            if len(chunk) >= 10000:
                f.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            f.write("\n".join(chunk) + "\n")


if __name__ == "__main__":
    main()
