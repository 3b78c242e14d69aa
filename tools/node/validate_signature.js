// What a Node receiver of proxy-relay's callbacks does: twilio-node's validateRequest on each
// request. Reads JSON on stdin ({"token", "requests": [{"url", "params": [[k, v]...],
// "signature"}]}); prints {"valid": [bool...]}.
const twilio = require('./node_modules/twilio');

let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const job = JSON.parse(input);
  const valid = job.requests.map((r) =>
    twilio.validateRequest(job.token, r.signature, r.url, Object.fromEntries(r.params)),
  );
  console.log(JSON.stringify({ valid }));
});
