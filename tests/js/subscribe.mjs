// A real graphql-ws client (npm `graphql-ws`, the protocol's reference implementation):
// node subscribe.mjs <ws url> <session token> <events to wait for> <timeout ms>
// Prints "ready" once subscribed, then each attempt as a JSON line; exits 0 after the
// expected number of events, 1 on timeout or error.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, wanted, timeoutMs] = process.argv.slice(2);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { token },
  retryAttempts: 0,
  on: { connected: () => setTimeout(() => console.log('ready'), 200) },
});
const timer = setTimeout(() => { console.error('timed out'); process.exit(1); }, Number(timeoutMs));
let seen = 0;
client.subscribe(
  { query: 'subscription { attempts { email status mailing { id } } }' },
  {
    next: (result) => {
      if (result.errors) { console.error(JSON.stringify(result.errors)); process.exit(1); }
      console.log(JSON.stringify(result.data.attempts));
      if (++seen >= Number(wanted)) { clearTimeout(timer); client.dispose(); process.exit(0); }
    },
    error: (err) => { console.error('error', JSON.stringify(err)); process.exit(1); },
    complete: () => {},
  },
);
