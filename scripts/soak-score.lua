-- soak-score.lua: wrk script of scripts/soak.sh. POSTs the JSON body in the file named by
-- $SOAK_BODY to wrk's URL, and at the end writes one line of counts for soak.sh to parse:
--   SOAK-WRK requests=N non2xx=N connect=N read=N write=N timeout=N p50_ms=X p99_ms=X
-- (wrk counts a status of 400 or more as non2xx; socket errors are the other four.)
local path = os.getenv("SOAK_BODY")
local f = assert(io.open(path, "rb"), "SOAK_BODY must name a readable file")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "SOAK-WRK requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d " ..
        "p50_ms=%.3f p99_ms=%.3f\n",
        summary.requests, e.status, e.connect, e.read, e.write, e.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
