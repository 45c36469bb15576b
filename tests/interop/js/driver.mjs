// driver.mjs — run one interop scenario with the official AWS Amplify JS
// Events client (`events` from 'aws-amplify/data') and report what it saw.
//
// Usage:  node driver.mjs < scenario.json
//
// Input: ONE JSON object on stdin.
//
//   {
//     "endpoint": "http://127.0.0.1:PORT/event",  HTTP publish URL; the client
//                                                  dials <same host>/event/realtime
//     "region": "us-east-1",
//     "authMode": "apiKey" | "iam" | "userPool" | "oidc" | "lambda" | "none",
//                                                  default "apiKey"
//     "apiKey": "da2-...",                         for apiKey
//     "token": "<jwt or opaque token>",            userPool/oidc: served by the Auth
//                                                  token provider (sent as the access
//                                                  token); lambda/none: passed as the
//                                                  per-call `authToken` option
//     "credentials": {"accessKeyId": "...", "secretAccessKey": "...",
//                     "sessionToken": "..."},       for iam (static credentials provider)
//     "trace": false,                              true: also print every WebSocket
//                                                  frame sent/received and the dial
//     "httpRetry": false,                          true: keep Amplify's default HTTP
//                                                  retry (5xx/429/network); default
//                                                  is no retry, to keep tests fast
//     "timeout_ms": 60000,                         hard deadline for the whole run
//     "steps": [ ... ]                             executed in order, see below
//   }
//
// Steps (every step may carry "authMode", "apiKey", "authToken" where Amplify
// accepts per-call options: connect, subscribe, publish, post; "timeout_ms"
// bounds a single awaited client call, default 20000):
//
//   {"op":"connect", "channel":"/default/x", "as":"c1"}
//       events.connect(channel) -> {"kind":"connected","as":"c1"}
//                               or {"kind":"connect_error","as":"c1","error":{...}}
//   {"op":"subscribe", "channel_ref":"c1", "as":"s1", "wait": true}
//       channel.subscribe({next, error, complete}); with "wait" (default true)
//       waits for the subscription's `ready` promise (subscribe_success):
//         {"kind":"subscribed","sub":"s1","subscriptionId":"<uuid>"}
//         {"kind":"subscribe_failed","sub":"s1","error":{...}}  (ready rejected)
//       Observer callbacks, printed whenever they fire:
//         {"kind":"data","sub":"s1","data":<exactly what next() received>}
//         {"kind":"sub_error","sub":"s1","error":<what error() received>}
//         {"kind":"sub_complete","sub":"s1"}
//   {"op":"publish", "channel_ref":"c1", "event": <json value or list>}
//       channel.publish(event) over the WebSocket (a list = a batch, one event
//       per element) ->
//         {"kind":"publish_result","result":<resolved value>,"frame":<raw reply>}
//         {"kind":"publish_error","error":{...},"frame":<raw reply or null>}
//       "frame" is the server's publish_success / publish_error frame for this
//       publish, taken off the wire (Amplify itself does not expose it).
//   {"op":"post", "channel":"/default/x", "event": <json value or list>}
//       events.post(channel, event) over HTTP ->
//         {"kind":"post_result","result":<resolved value>}
//         {"kind":"post_error","status":<HTTP status|null>,"body":<parsed body|null>,
//          "error":{...}}
//       (a successful post resolves to nothing, or to the `failed` list when
//       the server reported per-event failures)
//   {"op":"wait_data", "count":N, "sub_ref":"s1"?, "timeout_ms":5000}
//       waits until N data observations in total (or for sub_ref only) have
//       been printed -> {"kind":"wait_ok","count":n} or
//       {"kind":"wait_timeout","count":n,"expected":N}
//   {"op":"unsubscribe", "sub_ref":"s1"}       -> {"kind":"unsubscribed","sub":"s1"}
//   {"op":"close", "channel_ref":"c1"}         channel.close() -> {"kind":"closed","channel":"c1"}
//   {"op":"close_all"}                          events.closeAll() -> {"kind":"closed_all"}
//   {"op":"sleep", "ms":100}                    -> {"kind":"slept","ms":100}
//
// Output: one JSON object per line on stdout, each with a "kind" and the
// "step" index (0-based) of the step that was running (observer callbacks
// carry the step index current when they fired). With "trace": true also
//   {"kind":"ws_dial","url":...,"protocols":[...],"connectAuth":<decoded header- protocol>}
//   {"kind":"ws_send","frame":<parsed JSON>}   {"kind":"ws_recv","frame":<parsed JSON>}
//   {"kind":"ws_close","code":n,"reason":"..."}
// A step whose channel_ref/sub_ref names a connect or subscribe that threw
// is not run: {"kind":"skipped","op":...,"ref":...}.
// The run ends with {"kind":"done"} and exit code 0. An unexpected failure
// (bad scenario, unknown ref, deadline exceeded) prints
// {"kind":"fatal","error":{...}} and exits 1.
// Anything Amplify logs goes to stderr.

import WsWebSocket from 'ws';

// Amplify's logger and stray console.log calls must not corrupt stdout.
for (const name of ['log', 'info', 'debug']) {
  console[name] = (...args) => console.error(...args);
}

let currentStep = -1;
let traceEnabled = false;

function emit(obj) {
  process.stdout.write(JSON.stringify({ ...obj, step: currentStep }) + '\n');
}

// ---------------------------------------------------------------------------
// Error serialisation: keep every structured field the client exposes.

function toPlain(value, depth = 0, seen = new WeakSet()) {
  // `seen` holds the objects on the current path only, so shared (non-cyclic)
  // references are serialised in full.
  if (value === null || value === undefined) return value ?? null;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'function') return undefined;
  if (typeof value !== 'object') return value;
  if (seen.has(value)) return '[circular]';
  if (depth > 6) return '[depth]';
  seen.add(value);
  try {
    return plainObject(value, depth, seen);
  } finally {
    seen.delete(value);
  }
}

function plainObject(value, depth, seen) {
  if (Array.isArray(value)) return value.map(v => toPlain(v, depth + 1, seen));
  if (value instanceof Error || (value.message !== undefined && value.stack !== undefined)) {
    const out = {};
    if (value.name !== undefined) out.name = value.name;
    if (value.message !== undefined) out.message = String(value.message);
    for (const key of Object.keys(value)) {
      // `_response` duplicates `response` on Amplify's ApiError.
      if (key === 'stack' || key === 'constructor' || key.startsWith('_')) continue;
      const v = toPlain(value[key], depth + 1, seen);
      if (v !== undefined) out[key] = v;
    }
    // Fields that some Amplify errors keep non-enumerable or on the prototype.
    for (const key of ['errorType', 'errorCode', 'errors', 'underlyingError',
      'recoverySuggestion', '$metadata', 'response', 'cause']) {
      if (!(key in out) && value[key] !== undefined) {
        const v = toPlain(value[key], depth + 1, seen);
        if (v !== undefined) out[key] = v;
      }
    }
    return out;
  }
  if (value instanceof Map) {
    return toPlain(Object.fromEntries(value), depth + 1, seen);
  }
  const out = {};
  for (const key of Object.keys(value)) {
    const v = toPlain(value[key], depth + 1, seen);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

function errorInfo(err) {
  const plain = toPlain(err);
  if (plain && typeof plain === 'object' && !Array.isArray(plain)) return plain;
  return { message: String(err) };
}

// ---------------------------------------------------------------------------
// WebSocket shim: Node 20 has no global WebSocket. Amplify always dials
// wss://<endpoint host>/event/realtime for a non-AWS host; rewrite that to
// ws:// when the configured endpoint is plain http://. Also remembers the
// server's publish replies so a publish step can report the raw frame.

let plainHttpHost = null; // host[:port] of an http:// endpoint
const publishReplies = new Map(); // op id -> publish_success / publish_error frame
let lastPublishId = null;

function parseFrame(data) {
  const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function decodeHeaderProtocol(protocols) {
  const list = Array.isArray(protocols) ? protocols : [protocols];
  const header = list.find(p => typeof p === 'string' && p.startsWith('header-'));
  if (!header) return null;
  try {
    const b64 = header.slice('header-'.length).replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(Buffer.from(b64, 'base64').toString('utf8'));
  } catch {
    return null;
  }
}

class LocalWebSocket extends WsWebSocket {
  constructor(url, protocols, options) {
    let target = String(url);
    if (plainHttpHost) {
      const parsed = new URL(target);
      if (parsed.protocol === 'wss:' && parsed.host === plainHttpHost) {
        parsed.protocol = 'ws:';
        target = parsed.toString();
      }
    }
    super(target, protocols, options);
    if (traceEnabled) {
      emit({ kind: 'ws_dial', url: target, requestedUrl: String(url),
        protocols: protocols ?? [], connectAuth: decodeHeaderProtocol(protocols ?? []) });
    }
    this.addEventListener('message', event => {
      const frame = parseFrame(event.data);
      if (traceEnabled) emit({ kind: 'ws_recv', frame });
      if (frame && typeof frame === 'object' && frame.id &&
          (frame.type === 'publish_success' || frame.type === 'publish_error')) {
        publishReplies.set(frame.id, frame);
      }
    });
    this.addEventListener('close', event => {
      if (traceEnabled) emit({ kind: 'ws_close', code: event.code, reason: event.reason });
    });
  }

  send(data, ...rest) {
    const frame = parseFrame(data);
    if (frame && typeof frame === 'object' && frame.type === 'publish') lastPublishId = frame.id;
    if (traceEnabled) emit({ kind: 'ws_send', frame });
    return super.send(data, ...rest);
  }
}

globalThis.WebSocket = LocalWebSocket;

// Imported after the shim is installed (Amplify reads the global lazily, but
// keep the order obvious).
const { Amplify } = await import('aws-amplify');
const { events } = await import('aws-amplify/data');

// ---------------------------------------------------------------------------
// Scenario helpers

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function fatal(err) {
  emit({ kind: 'fatal', error: errorInfo(err) });
  process.exit(1);
}

class StepTimeout extends Error {
  constructor(ms) {
    super(`timed out after ${ms} ms`);
    this.name = 'StepTimeout';
  }
}

function withTimeout(promise, ms) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new StepTimeout(ms)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Token object in the shape Amplify's AuthSession uses: toString() gives the
// raw token, payload the decoded claims (empty when it is not a JWT).
function tokenObject(raw) {
  let payload = {};
  const parts = String(raw).split('.');
  if (parts.length === 3) {
    try {
      payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    } catch {
      payload = {};
    }
  }
  return { payload, toString: () => String(raw) };
}

function callOptions(step, defaults) {
  const opts = { ...defaults };
  for (const key of ['authMode', 'apiKey', 'authToken']) {
    if (step[key] !== undefined) opts[key] = step[key];
  }
  return Object.keys(opts).length ? opts : undefined;
}

// ---------------------------------------------------------------------------

async function main() {
  const raw = await readStdin();
  let scenario;
  try {
    scenario = JSON.parse(raw);
  } catch (err) {
    fatal(new Error(`scenario is not valid JSON: ${err.message}`));
  }
  const {
    endpoint,
    region = 'us-east-1',
    authMode = 'apiKey',
    apiKey,
    token,
    credentials,
    steps = [],
  } = scenario;
  if (!endpoint) fatal(new Error('scenario needs "endpoint"'));
  traceEnabled = Boolean(scenario.trace);

  const deadlineMs = scenario.timeout_ms ?? 60000;
  const deadline = setTimeout(() => fatal(new Error(`scenario deadline of ${deadlineMs} ms exceeded`)), deadlineMs);

  const endpointUrl = new URL(endpoint);
  if (endpointUrl.protocol === 'http:') plainHttpHost = endpointUrl.host;

  const auth = {};
  if (credentials) {
    auth.credentialsProvider = {
      getCredentialsAndIdentityId: async () => ({ credentials: { ...credentials } }),
      clearCredentialsAndIdentityId: () => {},
    };
  }
  if (token !== undefined && (authMode === 'userPool' || authMode === 'oidc')) {
    auth.tokenProvider = {
      getTokens: async () => ({ accessToken: tokenObject(token), idToken: tokenObject(token) }),
    };
  }
  const libraryOptions = {};
  if (Object.keys(auth).length) libraryOptions.Auth = auth;
  if (!scenario.httpRetry) {
    libraryOptions.API = { REST: { retryStrategy: { strategy: 'no-retry' } } };
  }
  const eventsConfig = { endpoint, region, defaultAuthMode: authMode };
  if (apiKey !== undefined) eventsConfig.apiKey = apiKey;
  Amplify.configure({ API: { Events: eventsConfig } }, libraryOptions);

  // Lambda / none: the token travels as the per-call authToken option.
  const defaults = {};
  if (token !== undefined && (authMode === 'lambda' || authMode === 'none')) {
    defaults.authToken = token;
  }

  const channels = new Map();
  const subs = new Map();
  // Refs whose connect/subscribe failed: later steps using them are skipped
  // (reported) instead of aborting the run.
  const failedRefs = new Set();
  const dataCount = { total: 0, bySub: new Map() };
  const dataWaiters = new Set();

  const onData = subName => {
    dataCount.total += 1;
    dataCount.bySub.set(subName, (dataCount.bySub.get(subName) ?? 0) + 1);
    for (const w of dataWaiters) w();
  };

  const need = (map, ref, what) => {
    if (!map.has(ref)) throw new Error(`unknown ${what} ${JSON.stringify(ref)}`);
    return map.get(ref);
  };

  for (let i = 0; i < steps.length; i += 1) {
    currentStep = i;
    const step = steps[i];
    const stepTimeout = step.timeout_ms ?? 20000;
    const ref = step.channel_ref ?? step.sub_ref;
    if (ref !== undefined && failedRefs.has(ref) && step.op !== 'wait_data') {
      emit({ kind: 'skipped', op: step.op, ref, reason: 'ref failed earlier' });
      continue;
    }
    switch (step.op) {
      case 'connect': {
        const name = step.as ?? `c${i}`;
        try {
          const channel = await withTimeout(
            events.connect(step.channel, callOptions(step, defaults)), stepTimeout);
          channels.set(name, channel);
          emit({ kind: 'connected', as: name });
        } catch (err) {
          failedRefs.add(name);
          emit({ kind: 'connect_error', as: name, error: errorInfo(err) });
        }
        break;
      }
      case 'subscribe': {
        const channel = need(channels, step.channel_ref, 'channel_ref');
        const name = step.as ?? `s${i}`;
        let sub;
        try {
          sub = channel.subscribe({
            next: data => {
              emit({ kind: 'data', sub: name, data: toPlain(data) });
              onData(name);
            },
            error: err => emit({ kind: 'sub_error', sub: name, error: errorInfo(err) }),
            complete: () => emit({ kind: 'sub_complete', sub: name }),
          }, callOptions(step, defaults));
        } catch (err) {
          failedRefs.add(name);
          emit({ kind: 'subscribe_failed', sub: name, error: errorInfo(err) });
          break;
        }
        subs.set(name, sub);
        if (step.wait !== false && sub && sub.ready) {
          try {
            const info = await withTimeout(sub.ready, stepTimeout);
            emit({ kind: 'subscribed', sub: name, subscriptionId: info?.subscriptionId ?? null });
          } catch (err) {
            emit({ kind: 'subscribe_failed', sub: name, error: errorInfo(err) });
          }
        } else {
          emit({ kind: 'subscribe_sent', sub: name });
        }
        break;
      }
      case 'publish': {
        const channel = need(channels, step.channel_ref, 'channel_ref');
        lastPublishId = null;
        try {
          const result = await withTimeout(
            channel.publish(step.event, callOptions(step, defaults)), stepTimeout);
          emit({ kind: 'publish_result', result: toPlain(result) ?? null,
            frame: publishReplies.get(lastPublishId) ?? null });
        } catch (err) {
          emit({ kind: 'publish_error', error: errorInfo(err),
            frame: (lastPublishId && publishReplies.get(lastPublishId)) || null });
        }
        break;
      }
      case 'post': {
        try {
          const result = await withTimeout(
            events.post(step.channel, step.event, callOptions(step, defaults)), stepTimeout);
          emit({ kind: 'post_result', result: toPlain(result) ?? null });
        } catch (err) {
          // Amplify maps the HTTP error body to name/message only when it has
          // a top-level code/message; surface the raw status and body as well.
          const response = err?.response;
          let body = response?.body ?? null;
          try {
            body = typeof body === 'string' ? JSON.parse(body) : body;
          } catch {
            // keep the text
          }
          emit({ kind: 'post_error', status: response?.statusCode ?? null, body,
            error: errorInfo(err) });
        }
        break;
      }
      case 'wait_data': {
        const expected = step.count ?? 1;
        const subRef = step.sub_ref;
        const current = () => (subRef ? dataCount.bySub.get(subRef) ?? 0 : dataCount.total);
        const ok = await new Promise(resolve => {
          if (current() >= expected) {
            resolve(true);
            return;
          }
          const check = () => {
            if (current() >= expected) {
              dataWaiters.delete(check);
              clearTimeout(timer);
              resolve(true);
            }
          };
          const timer = setTimeout(() => {
            dataWaiters.delete(check);
            resolve(false);
          }, step.timeout_ms ?? 5000);
          dataWaiters.add(check);
        });
        emit(ok
          ? { kind: 'wait_ok', count: current() }
          : { kind: 'wait_timeout', count: current(), expected });
        break;
      }
      case 'unsubscribe': {
        const sub = need(subs, step.sub_ref, 'sub_ref');
        sub.unsubscribe();
        emit({ kind: 'unsubscribed', sub: step.sub_ref });
        break;
      }
      case 'close': {
        const channel = need(channels, step.channel_ref, 'channel_ref');
        await channel.close();
        emit({ kind: 'closed', channel: step.channel_ref });
        break;
      }
      case 'close_all': {
        try {
          await withTimeout(events.closeAll(), stepTimeout);
          emit({ kind: 'closed_all' });
        } catch (err) {
          emit({ kind: 'close_all_error', error: errorInfo(err) });
        }
        break;
      }
      case 'sleep': {
        const ms = step.ms ?? 100;
        await new Promise(resolve => setTimeout(resolve, ms));
        emit({ kind: 'slept', ms });
        break;
      }
      default:
        throw new Error(`unknown op ${JSON.stringify(step.op)} in step ${i}`);
    }
  }

  currentStep = steps.length;
  // Tidy up: close the shared socket (best effort), then stop. Amplify keeps
  // keep-alive timers running, so exit explicitly.
  try {
    await withTimeout(events.closeAll(), 2000);
  } catch {
    // ignore
  }
  clearTimeout(deadline);
  emit({ kind: 'done' });
  process.stdout.write('', () => process.exit(0));
}

process.on('unhandledRejection', err => {
  if (traceEnabled) emit({ kind: 'unhandled_rejection', error: errorInfo(err) });
  console.error('unhandled rejection:', err);
});

main().catch(fatal);
