// Publishes one CloudEvent to otphub's hub (POST /hub?hub.mode=publish)
// with the official CloudEvents SDK for JavaScript, in structured or
// binary HTTP mode, as an outside producer would.
// stdin: {"url": "<hub publish URL>", "token": "...", "mode": "structured" | "binary",
//         "attributes": {"id": ..., "source": ..., "type": ..., ...}, "data": {...}, "omitTime": false}
// stdout: {"status": <HTTP status>, "body": "<answer>"}
import { CloudEvent, HTTP } from "cloudevents";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { url, token, mode, attributes, data, omitTime } = JSON.parse(input);
const ce = new CloudEvent({ ...attributes, datacontenttype: "application/json", data });
const message = mode === "binary" ? HTTP.binary(ce) : HTTP.structured(ce);
const headers = { ...message.headers, authorization: `Bearer ${token}` };
let body = message.body;
if (omitTime) {
  // The SDK always stamps a time; an outside producer may not send one.
  if (mode === "binary") {
    delete headers["ce-time"];
  } else {
    const parsed = JSON.parse(body);
    delete parsed.time;
    body = JSON.stringify(parsed);
  }
}
const resp = await fetch(url, { method: "POST", headers, body });
process.stdout.write(JSON.stringify({ status: resp.status, body: await resp.text() }));
