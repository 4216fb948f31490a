// Load generator for the intake benchmark: autocannon, 64 connections, in its own process.
// node benchmarks/loadgen.mjs URL SECONDS (healthz|alert) TOKEN  -> prints {"per_second": N, "non2xx": M}
import autocannon from "autocannon";

const [url, seconds, kind, token] = process.argv.slice(2);
let n = 0;
const options = { url, connections: 64, duration: Number(seconds) };
if (kind === "alert") {
  options.method = "POST";
  options.headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  options.requests = [{
    setupRequest: (request) => {
      n += 1;
      request.body = JSON.stringify({ id: `load-${process.pid}-${n}`, title: "load" });
      return request;
    },
  }];
}
const result = await autocannon(options);
const ok = result["2xx"];
console.log(JSON.stringify({ per_second: ok / Number(seconds), non2xx: result.non2xx, errors: result.errors }));
