// Code written for Twilio Proxy, run against proxy-relay with one line changed.
//
// twilio-node, unmodified from npm (tools/node/package.json and its lock file), pointed at the
// server with `client.proxy.baseUrl`. Every step asserts what Proxy would answer; any failure
// exits non-zero with the step. Run by crates/proxy-relay/tests/proxy_clients.rs with the
// server's URL and credentials in PROXY_URL, ACCOUNT_SID and AUTH_TOKEN.
"use strict";

const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const twilio = require("twilio");

const BASE = process.env.PROXY_URL.replace(/\/$/, "");
const ACCOUNT = process.env.ACCOUNT_SID;
const TOKEN = process.env.AUTH_TOKEN;

const client = twilio(ACCOUNT, TOKEN);
client.proxy.baseUrl = BASE; // the one line that changes
const proxy = client.proxy.v1;

const run = crypto.randomBytes(4).toString("hex");
const digits = String(parseInt(run, 16) % 1000000).padStart(6, "0");
const RIDER = `+1555${digits}1`;
const DRIVER = `+1555${digits}2`;
const POOL = [`+1444${digits}0`, `+1444${digits}1`];

const step = (name) => console.log(`-- ${name}`);
const isDate = (v) => v instanceof Date && !Number.isNaN(v.getTime());

async function expectError(code, status, fn) {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof twilio.RestException, `not a RestException: ${e}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    assert.equal(e.status, status);
    return e;
  }
  throw new Error(`expected error ${code}, the call succeeded`);
}

// What Twilio posts when `from` texts `to`, signed as Twilio signs it.
async function text(from, to, body) {
  const url = `${BASE}/twilio/sms`;
  const params = {
    MessageSid: `SM${crypto.randomBytes(16).toString("hex")}`,
    AccountSid: ACCOUNT,
    From: from,
    To: to,
    Body: body,
    NumMedia: "0",
  };
  const signature = twilio.getExpectedTwilioSignature(TOKEN, url, params);
  const r = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/x-www-form-urlencoded",
      "X-Twilio-Signature": signature,
    },
    body: new URLSearchParams(params).toString(),
  });
  const answer = await r.text();
  assert.equal(r.status, 200, `webhook answered ${r.status}: ${answer}`);
  return answer;
}

async function main() {
  step("a service and its pool");
  const service = await proxy.services.create({ uniqueName: `rides-${run}`, defaultTtl: 3600 });
  assert.match(service.sid, /^KS[0-9a-f]{32}$/);
  assert.equal(service.accountSid, ACCOUNT);
  assert.equal(service.defaultTtl, 3600);
  assert.equal(service.numberSelectionBehavior, "prefer-sticky");
  assert.ok(isDate(service.dateCreated) && isDate(service.dateUpdated));
  assert.equal(service.url, `${BASE}/v1/Services/${service.sid}`);
  assert.equal(service.links.phone_numbers, `${service.url}/PhoneNumbers`);
  const svc = proxy.services(service.sid);
  const numbers = [];
  for (const n of POOL) numbers.push(await svc.phoneNumbers.create({ phoneNumber: n }));
  for (const [i, n] of numbers.entries()) {
    assert.match(n.sid, /^PN/);
    assert.equal(n.phoneNumber, POOL[i]);
    assert.equal(n.isReserved, false);
    assert.equal(n.inUse, 0);
    assert.ok(isDate(n.dateCreated));
  }
  assert.deepEqual((await svc.phoneNumbers.list()).map((n) => n.phoneNumber), POOL);

  step("a session with two participants");
  const session = await svc.sessions.create({
    uniqueName: `ride-${run}`,
    participants: [
      { Identifier: RIDER, FriendlyName: "rider" },
      { Identifier: DRIVER, FriendlyName: "driver" },
    ],
  });
  assert.match(session.sid, /^KC/);
  assert.equal(session.status, "open");
  assert.equal(session.ttl, 3600);
  assert.ok(isDate(session.dateCreated) && isDate(session.dateStarted));
  assert.equal(session.dateEnded, null);
  const sess = svc.sessions(session.sid);
  const parts = await sess.participants.list();
  assert.deepEqual(parts.map((p) => p.identifier), [RIDER, DRIVER]);
  const [rider, driver] = parts;
  for (const p of parts) {
    assert.match(p.sid, /^KP/);
    assert.ok(POOL.includes(p.proxyIdentifier));
    assert.match(p.proxyIdentifierSid, /^PN/);
    assert.equal(p.dateDeleted, null);
    assert.ok(isDate(p.dateCreated));
  }

  step("a conversation through signed webhooks");
  await text(RIDER, rider.proxyIdentifier, "on my way");
  assert.equal((await sess.fetch()).status, "in-progress");
  await text(DRIVER, driver.proxyIdentifier, "see you soon");
  assert.match(await text(DRIVER, driver.proxyIdentifier, "STOP"), /unsubscribed/);
  await text(RIDER, rider.proxyIdentifier, "are you there?");
  await text(DRIVER, driver.proxyIdentifier, "START");
  await text(RIDER, rider.proxyIdentifier, "thanks");

  step("a MessageInteraction, and one to a participant who opted out");
  const mis = sess.participants(rider.sid).messageInteractions;
  const mi = await mis.create({ body: "your driver is here" });
  assert.match(mi.sid, /^KI/);
  assert.equal(mi.participantSid, rider.sid);
  assert.equal(mi.outboundResourceStatus, "queued");
  assert.match(mi.outboundResourceSid, /^SM/);
  assert.deepEqual(JSON.parse(mi.data), { body: "your driver is here" });
  await text(RIDER, rider.proxyIdentifier, "STOP");
  const refused = await mis.create({ body: "rate your ride" });
  assert.equal(refused.outboundResourceStatus, "failed");
  assert.equal(refused.outboundResourceSid, null);

  step("the interaction log, more than one page");
  const page = await sess.interactions.page({ pageSize: 3 });
  assert.equal(page.instances.length, 3);
  assert.ok(page.nextPageUrl.startsWith(`${BASE}/v1/`), page.nextPageUrl);
  const all = await sess.interactions.list({ pageSize: 3 });
  assert.equal(all.length, 9);
  assert.equal(new Set(all.map((i) => i.sid)).size, 9);
  for (const i of all) {
    assert.match(i.sid, /^KI/);
    assert.equal(i.type, "message");
    assert.ok(isDate(i.dateCreated) && isDate(i.dateUpdated));
  }
  const byBody = new Map(all.map((i) => [JSON.parse(i.data).body, i]));
  const forward = byBody.get("on my way");
  assert.equal(forward.inboundParticipantSid, rider.sid);
  assert.equal(forward.inboundResourceStatus, "delivered");
  assert.equal(forward.outboundParticipantSid, driver.sid);
  assert.equal(forward.outboundResourceStatus, "queued");
  const blocked = byBody.get("are you there?");
  assert.equal(blocked.outboundResourceStatus, "failed");
  assert.equal(blocked.outboundResourceSid, null);
  assert.equal(byBody.get("STOP").outboundResourceSid, null);
  assert.equal(await sess.interactions(forward.sid).remove(), true);
  assert.equal((await sess.interactions.list()).length, 8);

  step("close and reopen");
  const closed = await sess.update({ status: "closed" });
  assert.equal(closed.status, "closed");
  assert.equal(closed.closedReason, "api");
  assert.ok(isDate(closed.dateEnded));
  await expectError(80608, 400, () => sess.update({ status: "open" }));
  const reopened = await sess.update({ status: "in-progress" });
  assert.equal(reopened.status, "in-progress");
  const expiry = new Date(Date.UTC(2099, 0, 2, 3, 4, 5));
  assert.equal((await sess.update({ dateExpiry: expiry })).dateExpiry.getTime(), expiry.getTime());

  step("Proxy's rules, as RestException with Proxy's codes");
  await expectError(80602, 400, () => proxy.services.create({ uniqueName: `rides-${run}` }));
  await expectError(80609, 400, () =>
    svc.sessions.create({
      participants: [0, 1, 2].map((k) => ({ Identifier: `+1666${digits}${k}` })),
    }),
  );
  await expectError(80611, 400, () => svc.phoneNumbers(rider.proxyIdentifierSid).remove());
  await expectError(80103, 400, () => sess.participants.create({ identifier: RIDER }));

  step("wrong credentials: 401, 20003");
  const stranger = twilio(ACCOUNT, "not-the-token");
  stranger.proxy.baseUrl = BASE;
  await expectError(20003, 401, () => stranger.proxy.v1.services.list());

  step("delete");
  assert.equal(await sess.remove(), true);
  await expectError(20404, 404, () => sess.fetch());
  console.log("node scenario passed");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
