// The GraphQL API: requests over HTTP with the session cookie (the page never sees the
// token), subscriptions over one WebSocket (graphql-ws), which the browser opens with the
// same cookie.

import { createClient } from '/vendor/graphql-ws/client.js';

export class ApiError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join('; '));
    this.errors = errors;
    this.code = errors[0] && errors[0].extensions && errors[0].extensions.code;
  }
}

export async function gql(query, variables = {}) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
      body: JSON.stringify({ query, variables }),
    });
  } catch (err) {
    throw new ApiError([{ message: String(err.message || err), extensions: { code: 'NETWORK' } }]);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError([{ message: `HTTP ${response.status}` }]);
  }
  if (body.errors && body.errors.length) throw new ApiError(body.errors);
  return body.data;
}

let client = null;

/** Starts a subscription; returns the function that ends it. The server completes a
 * subscription when the account's role or status changes: it is started again, under the
 * new rules. */
export function subscribe(query, variables, onData) {
  if (!client) {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    client = createClient({ url: `${scheme}://${location.host}/graphql/ws`, retryAttempts: 1000, lazy: true });
  }
  let stopped = false;
  let stop = null;
  const start = () => {
    stop = client.subscribe({ query, variables }, {
      next: (result) => result.data && onData(result.data),
      error: (err) => console.warn('subscription', err),
      complete: () => { if (!stopped) setTimeout(() => { if (!stopped) start(); }, 1000); },
    });
  };
  start();
  return () => {
    stopped = true;
    if (stop) stop();
  };
}

/** After signing in or out: the socket signs in when it connects, so start a new one. */
export function resetSubscriptions() {
  if (client) client.dispose();
  client = null;
}
