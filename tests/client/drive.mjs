// Drives a Consentry server through braze-api, a third-party Braze client from npm, used
// exactly as its README says (`new Braze(url, key)`, then its endpoint methods) with nothing
// patched, wrapped or monkey-patched: if Consentry speaks Braze's API, this client works with
// only the base URL and the key changed.
//
// Every one of the six subscription endpoints is driven: states are set through V2, V1 and
// /users/track, read back through /subscription/status/get and /subscription/user/status,
// profiles are deleted through /users/delete, and the errors (400 with the server's message
// surfaced by the client, 401, 403) are checked through the client's own ResponseError.
//
// It expects a workspace in which the two groups it is given are new (no state in them yet)
// and no profile uses the external ids, emails or phones below: tests/api/braze_client.rs
// starts such a server. Environment:
//   BASE_URL          e.g. http://127.0.0.1:8080 (no trailing slash: the client appends paths)
//   API_KEY           a key with every permission
//   READ_ONLY_KEY     a key of the same workspace with only subscription.status.get
//   EMAIL_GROUP_ID, EMAIL_GROUP_NAME   an email group
//   SMS_GROUP_ID, SMS_GROUP_NAME       an sms group
//   ONLY              optional, comma-separated endpoint tags (v2, v1, get, user, track,
//                     delete): run only the checks that need nothing else, e.g. ONLY=v2
//
// It prints one line per check and exits 1 at the first failure, saying what was expected and
// what came back.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { Braze } from 'braze-api';

const ENDPOINTS = {
  v2: 'POST /v2/subscription/status/set',
  v1: 'POST /subscription/status/set',
  get: 'GET /subscription/status/get',
  user: 'GET /subscription/user/status',
  track: 'POST /users/track',
  delete: 'POST /users/delete',
};

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`drive.mjs: the environment variable ${name} is required (see the top of this file)`);
    process.exit(2);
  }
  return value;
}

const BASE_URL = required('BASE_URL');
const EMAIL = { id: required('EMAIL_GROUP_ID'), name: required('EMAIL_GROUP_NAME'), channel: 'email' };
const SMS = { id: required('SMS_GROUP_ID'), name: required('SMS_GROUP_NAME'), channel: 'sms' };
const braze = new Braze(BASE_URL, required('API_KEY'));
const readOnly = new Braze(BASE_URL, required('READ_ONLY_KEY'));
const badKey = new Braze(BASE_URL, 'not-a-key-' + randomUUID());

const only = process.env.ONLY ? new Set(process.env.ONLY.split(',').map((tag) => tag.trim())) : null;
for (const tag of only ?? []) {
  if (!(tag in ENDPOINTS)) {
    console.error(`drive.mjs: unknown tag ${JSON.stringify(tag)} in ONLY; known: ${Object.keys(ENDPOINTS).join(', ')}`);
    process.exit(2);
  }
}

// A check lists every endpoint its outcome depends on, including the ones earlier checks wrote
// its data through, so that ONLY can pick the checks a partial server can answer.
const checks = [];
function check(needs, title, run) {
  checks.push({ needs, title, run });
}

// The identifiers. "zoë smith+1" makes the client's query encoding matter: it sends the space
// as `+`, the `+` as `%2B` and the `ë` as UTF-8 percent-escapes.
const ADA = { external_id: 'ada', email: 'Ada@Example.com', phone: '+12223334444' };
const GRACE = { external_id: 'grace', email: 'grace@example.com' };
const ZOE = 'zoë smith+1';
const HEDY = 'hedy';
const LINUS = 'linus';
const ORPHAN_EMAIL = 'orphan@example.com';
const ORPHAN_PHONE = '+15556667777';
const UNUSED_PHONE = '+447700900123';
const SUCCESS = { message: 'success' };

const entry = (group, status) => ({ id: group.id, name: group.name, channel: group.channel, status });
const byName = (groups) => [...groups].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

// Awaits a call the server must refuse with `status`, and returns the client's error. The
// client throws its ResponseError (`message` and `errors` from the JSON body, `status` from the
// response) for any non-2xx answer, and a FetchError if the body is not JSON.
async function refused(call, status) {
  let result;
  try {
    result = await call;
  } catch (error) {
    assert.equal(
      error.status,
      status,
      `expected HTTP ${status}, got ${error.status ?? 'no HTTP status'}: ${error.name}: ${error.message}`,
    );
    assert.equal(typeof error.message, 'string', 'the error has a string message');
    assert.ok(error.message.length > 0, 'the error message is not empty');
    if (error.errors !== undefined) {
      assert.ok(
        Array.isArray(error.errors) && error.errors.every((e) => typeof e === 'string'),
        `errors is an array of strings: ${JSON.stringify(error.errors)}`,
      );
    }
    return error;
  }
  assert.fail(`expected HTTP ${status}, got success: ${JSON.stringify(result)}`);
}

function mentions(error, text) {
  const names = `the message names ${JSON.stringify(text)}: ${JSON.stringify(error.message)}`;
  assert.ok(error.message.includes(text), names);
}

// ---- Writes: profiles and states through all three write paths --------------------------------

check(['track'], 'users.track creates profiles, skips and reports the invalid objects', async () => {
  const answer = await braze.users.track({
    attributes: [
      {
        ...ADA,
        first_name: 'Ada',
        subscription_groups: [{ subscription_group_id: EMAIL.id, subscription_state: 'subscribed' }],
      },
      { ...GRACE, tier: 'gold' },
      { external_id: 'broken', email: 'not an email' },
      { user_alias: { alias_name: 'anonymous', alias_label: 'web' }, email: 'alias@example.com' },
    ],
    events: [{ external_id: ADA.external_id, name: 'signed_up', time: new Date().toISOString() }],
  });
  assert.equal(answer.message, 'success');
  assert.equal(answer.attributes_processed, 2);
  assert.deepEqual(
    answer.errors.map(({ input_array, index }) => ({ input_array, index })),
    [
      { input_array: 'attributes', index: 2 },
      { input_array: 'attributes', index: 3 },
    ],
  );
  assert.ok(answer.errors[0].type.includes('not an email'), `names the bad email: ${answer.errors[0].type}`);
  assert.ok(answer.errors[1].type.includes('external_id'), `names the missing external_id: ${answer.errors[1].type}`);
});

check(['v2'], 'v2.subscription.status.set by external ids, phones and emails in one request', async () => {
  const answer = await braze.v2.subscription.status.set({
    subscription_groups: [
      { subscription_group_id: EMAIL.id, subscription_state: 'subscribed', external_ids: [GRACE.external_id, ZOE] },
      {
        subscription_group_id: SMS.id,
        subscription_state: 'subscribed',
        phones: [ADA.phone],
        use_double_opt_in_logic: false,
      },
      { subscription_group_id: EMAIL.id, subscription_state: 'unsubscribed', emails: ['Orphan@Example.com'] },
    ],
  });
  assert.deepEqual(answer, SUCCESS);
});

check(['v1'], 'subscription.status.set (V1) by email, by external id and by phone', async () => {
  // The email in another case still reaches Ada: emails match regardless of case.
  assert.deepEqual(
    await braze.subscription.status.set({
      subscription_group_id: EMAIL.id,
      subscription_state: 'unsubscribed',
      email: ['ADA@EXAMPLE.COM'],
    }),
    SUCCESS,
  );
  assert.deepEqual(
    await braze.subscription.status.set({
      subscription_group_id: EMAIL.id,
      subscription_state: 'subscribed',
      external_id: [HEDY],
    }),
    SUCCESS,
  );
  assert.deepEqual(
    await braze.subscription.status.set({
      subscription_group_id: SMS.id,
      subscription_state: 'unsubscribed',
      phone: [ORPHAN_PHONE],
      use_double_opt_in_logic: false,
    }),
    SUCCESS,
  );
});

// ---- Reads -------------------------------------------------------------------------------------

check(['get', 'track', 'v2', 'v1'], 'subscription.status.get reads back external ids (as external_id[])', async () => {
  const answer = await braze.subscription.status.get({
    subscription_group_id: EMAIL.id,
    external_id: [ADA.external_id, GRACE.external_id, ZOE, HEDY, 'nobody'],
  });
  assert.deepEqual(answer, {
    status: { ada: 'Unsubscribed', grace: 'Subscribed', [ZOE]: 'Subscribed', hedy: 'Subscribed', nobody: 'Unknown' },
    message: 'success',
  });
});

check(['get', 'v2'], 'subscription.status.get with a single external id (sent as plain external_id)', async () => {
  const answer = await braze.subscription.status.get({
    subscription_group_id: EMAIL.id,
    external_id: GRACE.external_id,
  });
  assert.deepEqual(answer, { status: { grace: 'Subscribed' }, message: 'success' });
});

check(['get', 'track', 'v2', 'v1'], 'subscription.status.get reads back emails, keyed as written', async () => {
  const answer = await braze.subscription.status.get({
    subscription_group_id: EMAIL.id,
    email: [ADA.email, 'ORPHAN@example.com', 'never@example.com'],
  });
  assert.deepEqual(answer, {
    status: { [ADA.email]: 'Unsubscribed', 'ORPHAN@example.com': 'Unsubscribed', 'never@example.com': 'Unknown' },
    message: 'success',
  });
});

check(['get', 'track', 'v2', 'v1'], 'subscription.status.get reads back phones (the + sent as %2B)', async () => {
  assert.deepEqual(
    await braze.subscription.status.get({
      subscription_group_id: SMS.id,
      phone: [ADA.phone, ORPHAN_PHONE, UNUSED_PHONE],
    }),
    {
      status: { [ADA.phone]: 'Subscribed', [ORPHAN_PHONE]: 'Unsubscribed', [UNUSED_PHONE]: 'Unknown' },
      message: 'success',
    },
  );
  assert.deepEqual(await braze.subscription.status.get({ subscription_group_id: SMS.id, phone: ADA.phone }), {
    status: { [ADA.phone]: 'Subscribed' },
    message: 'success',
  });
});

check(['user', 'track', 'v2', 'v1'], "subscription.user.status lists a profile's groups", async () => {
  const answer = await braze.subscription.user.status({ external_id: ADA.external_id });
  assert.deepEqual(answer, {
    users: [
      {
        email: 'ada@example.com',
        phone: ADA.phone,
        external_id: ADA.external_id,
        subscription_groups: byName([entry(EMAIL, 'Unsubscribed'), entry(SMS, 'Subscribed')]),
      },
    ],
    total_count: 1,
    message: 'success',
  });
});

check(['user', 'v2'], 'subscription.user.status lists an email no profile carries, with its state', async () => {
  const answer = await braze.subscription.user.status({ email: [ORPHAN_EMAIL] });
  assert.deepEqual(answer, {
    users: [
      { email: ORPHAN_EMAIL, phone: null, external_id: null, subscription_groups: [entry(EMAIL, 'Unsubscribed')] },
    ],
    total_count: 1,
    message: 'success',
  });
});

check(['user', 'track', 'v2', 'v1'], 'subscription.user.status mixes names, pages with limit and offset', async () => {
  // external_id[]=grace&external_id[]=hedy&phone=%2B12223334444&limit=2&offset=1: the matches
  // are grace, hedy (external ids first, in order), then ada (by phone).
  const answer = await braze.subscription.user.status({
    external_id: [GRACE.external_id, HEDY],
    phone: ADA.phone,
    limit: 2,
    offset: 1,
  });
  assert.equal(answer.message, 'success');
  assert.equal(answer.total_count, 3);
  assert.deepEqual(
    answer.users.map((user) => user.external_id),
    [HEDY, ADA.external_id],
  );
});

check(['track', 'get', 'user', 'v2'], 'users.track (bulk) gives a new email its orphaned state', async () => {
  const answer = await braze.users.track({ attributes: [{ external_id: LINUS, email: ORPHAN_EMAIL }] }, true);
  assert.deepEqual(answer, { message: 'success', attributes_processed: 1 });
  assert.deepEqual(await braze.subscription.status.get({ subscription_group_id: EMAIL.id, external_id: [LINUS] }), {
    status: { linus: 'Unsubscribed' },
    message: 'success',
  });
  const listed = await braze.subscription.user.status({ email: ORPHAN_EMAIL });
  assert.deepEqual(
    listed.users.map((user) => [user.external_id, user.subscription_groups]),
    [[LINUS, [entry(EMAIL, 'Unsubscribed')]]],
  );
});

check(['delete', 'get', 'user', 'track', 'v2'], 'users.delete deletes profiles and their states', async () => {
  assert.deepEqual(await braze.users.delete({ external_ids: [GRACE.external_id, 'nobody'] }), {
    message: 'success',
    deleted: 1,
  });
  assert.deepEqual(await braze.subscription.status.get({ subscription_group_id: EMAIL.id, external_id: 'grace' }), {
    status: { grace: 'Unknown' },
    message: 'success',
  });
  assert.deepEqual(await braze.subscription.user.status({ email: GRACE.email }), {
    users: [],
    total_count: 0,
    message: 'success',
  });
});

// ---- Errors, as the client reports them --------------------------------------------------------

check(['v2'], 'v2 set: an unknown group is a 400 whose message names it', async () => {
  const unknown = randomUUID();
  const error = await refused(
    braze.v2.subscription.status.set({
      subscription_groups: [{ subscription_group_id: unknown, subscription_state: 'subscribed', external_ids: ['x'] }],
    }),
    400,
  );
  mentions(error, unknown);
});

check(['v2'], 'v2 set: an invalid phone and an email for an sms group are 400s naming them', async () => {
  const phone = await refused(
    braze.v2.subscription.status.set({
      subscription_groups: [{ subscription_group_id: SMS.id, subscription_state: 'subscribed', phones: ['+1 555'] }],
    }),
    400,
  );
  mentions(phone, 'subscription_groups[0].phones');
  mentions(phone, '"+1 555"');
  const email = await refused(
    braze.v2.subscription.status.set({
      subscription_groups: [{ subscription_group_id: SMS.id, subscription_state: 'subscribed', emails: [ADA.email] }],
    }),
    400,
  );
  mentions(email, 'subscription_groups[0].emails');
});

check(['v1'], 'V1 set: an email and a phone together is the 400 Braze documents', async () => {
  const error = await refused(
    braze.subscription.status.set({
      subscription_group_id: SMS.id,
      subscription_state: 'subscribed',
      email: [ADA.email],
      phone: [ADA.phone],
    }),
    400,
  );
  assert.equal(error.message, 'Either an email address or a phone number should be provided, but not both.');
});

check(['get'], 'status.get: unknown group, no identifier, email with phone, phone of an email group: 400', async () => {
  const get = (parameters) => braze.subscription.status.get(parameters);
  const unknown = randomUUID();
  mentions(await refused(get({ subscription_group_id: unknown, external_id: 'x' }), 400), unknown);
  await refused(get({ subscription_group_id: EMAIL.id }), 400);
  await refused(get({ subscription_group_id: EMAIL.id, email: ADA.email, phone: ADA.phone }), 400);
  await refused(get({ subscription_group_id: EMAIL.id, phone: ADA.phone }), 400);
});

check(['user'], 'user.status: a limit over 100 or not a number is a 400 naming it', async () => {
  mentions(await refused(braze.subscription.user.status({ external_id: 'x', limit: 101 }), 400), 'limit');
  // Not a number at all: the answer must still be JSON (a framework's plain-text rejection
  // would reach the caller as the client's FetchError, not as an HTTP 400 with a message).
  mentions(await refused(braze.subscription.user.status({ external_id: 'x', limit: 'ten' }), 400), 'limit');
});

check(['track'], 'users.track: more than 75 attribute objects is a 400', async () => {
  const attributes = Array.from({ length: 76 }, (_, i) => ({ external_id: `bulk-${i}` }));
  await refused(braze.users.track({ attributes }), 400);
});

check(['delete'], 'users.delete: braze_ids are refused with a 400 naming them', async () => {
  mentions(await refused(braze.users.delete({ braze_ids: ['abc'] }), 400), 'braze_ids');
});

// One call per endpoint with harmless, valid arguments, for the 401 and 403 checks.
const calls = {
  v2: (client) =>
    client.v2.subscription.status.set({
      subscription_groups: [
        { subscription_group_id: EMAIL.id, subscription_state: 'subscribed', external_ids: ['keyless'] },
      ],
    }),
  v1: (client) =>
    client.subscription.status.set({
      subscription_group_id: EMAIL.id,
      subscription_state: 'subscribed',
      external_id: ['keyless'],
    }),
  get: (client) => client.subscription.status.get({ subscription_group_id: EMAIL.id, external_id: 'keyless' }),
  user: (client) => client.subscription.user.status({ external_id: 'keyless' }),
  track: (client) => client.users.track({ attributes: [{ external_id: 'keyless' }] }),
  delete: (client) => client.users.delete({ external_ids: ['keyless'] }),
};

for (const [tag, call] of Object.entries(calls)) {
  check([tag], `${ENDPOINTS[tag]}: an unknown key is a 401`, async () => {
    await refused(call(badKey), 401);
  });
}

for (const [tag, call] of Object.entries(calls)) {
  if (tag === 'get') {
    check([tag], `${ENDPOINTS[tag]}: a key with only subscription.status.get is let in`, async () => {
      assert.deepEqual(await call(readOnly), { status: { keyless: 'Unknown' }, message: 'success' });
    });
  } else {
    check([tag], `${ENDPOINTS[tag]}: a key with only subscription.status.get is a 403`, async () => {
      await refused(call(readOnly), 403);
    });
  }
}

// ---- Run ---------------------------------------------------------------------------------------

const selected = checks.filter((c) => !only || c.needs.every((tag) => only.has(tag)));
console.log(`braze-api against ${BASE_URL}: ${selected.length} of ${checks.length} checks`);
let passed = 0;
for (const [i, c] of selected.entries()) {
  try {
    await c.run();
  } catch (error) {
    console.log(`not ok ${i + 1} - ${c.title}`);
    // The client's ResponseError carries the HTTP status and the body's errors apart from
    // its message: show them, or a 404 from a missing route reads like any other error.
    if (error.status !== undefined) {
      console.log(`  the server answered HTTP ${error.status}, errors: ${JSON.stringify(error.errors)}`);
    }
    console.log(`  ${String(error.stack ?? error).split('\n').join('\n  ')}`);
    console.log(`stopped at the first failure; ${passed} checks had passed`);
    process.exit(1);
  }
  passed += 1;
  console.log(`ok ${i + 1} - ${c.title}`);
}
console.log(`all ${passed} checks passed`);
