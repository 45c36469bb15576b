// sign.mjs — compute SigV4 headers with the official Amplify JS signer.
//
// Reads one JSON object from stdin:
//   {
//     "accessKeyId": "AKID...",            required
//     "secretAccessKey": "...",            required
//     "sessionToken": "...",               optional (adds x-amz-security-token)
//     "region": "us-east-1",               required
//     "host": "abc.appsync-api.us-east-1.amazonaws.com",  required (may carry ":port")
//     "date": "20250101T000000Z",          optional, default: now (UTC)
//     "body": "{}",                        optional, default "{}" (exact bytes signed)
//     "headers": {...},                    optional, replaces the default header set below
//     "path": "/event",                    optional, default "/event"
//     "service": "appsync"                 optional, default "appsync"
//   }
// and prints one JSON object on stdout: the full header object produced by the
// signer (the input headers plus host, x-amz-date, x-amz-security-token when
// a session token is given, and authorization), plus "signature" (the hex
// signature extracted from the authorization header) and "signedHeaders".
//
// Default headers (the set Amplify uses for AppSync Events WebSocket auth):
//   accept: application/json, text/javascript
//   content-encoding: amz-1.0
//   content-type: application/json; charset=UTF-8
//
// The request is always a POST to https://<host><path>.
// Exit 0 on success; exit 1 with {"kind":"error",...} on stdout otherwise.

import { signRequest } from '@aws-amplify/core/internals/aws-client-utils';

const DEFAULT_HEADERS = {
  accept: 'application/json, text/javascript',
  'content-encoding': 'amz-1.0',
  'content-type': 'application/json; charset=UTF-8',
};

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

// "20250101T000000Z" -> Date
function parseAmzDate(text) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) throw new Error(`bad date ${JSON.stringify(text)}; expected YYYYMMDDTHHMMSSZ`);
  const [, y, mo, d, h, mi, s] = m.map(Number);
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}

function fail(err) {
  process.stdout.write(
    JSON.stringify({ kind: 'error', name: err?.name, message: String(err?.message ?? err) }) + '\n',
  );
  process.exit(1);
}

try {
  const input = JSON.parse(await readStdin());
  for (const key of ['accessKeyId', 'secretAccessKey', 'region', 'host']) {
    if (!input[key]) throw new Error(`missing "${key}"`);
  }
  const credentials = {
    accessKeyId: input.accessKeyId,
    secretAccessKey: input.secretAccessKey,
  };
  if (input.sessionToken) credentials.sessionToken = input.sessionToken;

  const url = new URL(`https://${input.host}${input.path ?? '/event'}`);
  const signed = signRequest(
    {
      method: 'POST',
      url,
      headers: { ...(input.headers ?? DEFAULT_HEADERS) },
      body: input.body ?? '{}',
    },
    {
      credentials,
      signingRegion: input.region,
      signingService: input.service ?? 'appsync',
      signingDate: input.date ? parseAmzDate(input.date) : new Date(),
    },
  );
  const headers = signed.headers;
  const auth = headers.authorization ?? '';
  const signature = /Signature=([0-9a-f]+)/.exec(auth)?.[1] ?? null;
  const signedHeaders = /SignedHeaders=([^,\s]+)/.exec(auth)?.[1] ?? null;
  process.stdout.write(JSON.stringify({ headers, signature, signedHeaders }) + '\n');
  process.exit(0);
} catch (err) {
  fail(err);
}
