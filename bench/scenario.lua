-- wrk script shared by every scenario:
-- `wrk ... -s bench/scenario.lua URL -- METHOD BODY_BYTES CONNECTION BODY_KIND` (BODY_KIND: bytes or json)
-- It only sets the static request (wrk builds it once per thread, so there is no Lua work per
-- request) and prints the summary as one JSON line that bench/wrk.py reads.

function init(args)
   wrk.method = args[1] or "GET"
   local size = tonumber(args[2] or "0")
   if size > 0 and args[4] == "json" then
      -- {"data": "aaa..."}, `size` bytes in all (bench/load.py Scenario.body)
      wrk.body = '{"data":"' .. string.rep("a", size - 11) .. '"}'
      wrk.headers["Content-Type"] = "application/json"
   elseif size > 0 then
      wrk.body = string.rep("a", size)
      wrk.headers["Content-Type"] = "application/octet-stream"
   end
   if args[3] == "close" then
      wrk.headers["Connection"] = "close"
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH-JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,' ..
      '"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.status,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
