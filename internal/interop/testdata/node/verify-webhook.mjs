// Verifies one otphub delivery with the official Standard Webhooks
// package, called as its README shows: new Webhook(secret) for a "whsec_"
// secret, new Webhook(secret, { format: "raw" }) for any other one.
// stdin: {"secret": "...", "raw": false, "body": "<delivery body>",
//         "headers": {"webhook-id": ..., "webhook-timestamp": ..., "webhook-signature": ...}}
// stdout: {"ok": true, "payload": <the verified JSON>} or {"ok": false, "error": "..."}
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { secret, raw, body, headers } = JSON.parse(input);
try {
  const wh = raw ? new Webhook(secret, { format: "raw" }) : new Webhook(secret);
  const payload = wh.verify(body, headers);
  process.stdout.write(JSON.stringify({ ok: true, payload }));
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(err && err.message ? err.message : err) }));
}
