// Runs the graphql-http audit suite (the GraphQL-over-HTTP spec's own checks) against a
// running server: node graphql-http-audit.mjs http://127.0.0.1:8080/graphql
// Exits non-zero on any `error`, and on any `warn` not explained below (and in README.md).
import { auditServer } from 'graphql-http';

// Warnings we keep on purpose, with the reason. Keep README.md's list in step.
const EXPLAINED = {};

const url = process.argv[2];
if (!url) {
  console.error('usage: node graphql-http-audit.mjs <graphql url>');
  process.exit(2);
}
const results = await auditServer({ url });
let ok = 0, warned = 0, failed = 0;
for (const result of results) {
  if (result.status === 'ok') { ok++; continue; }
  const explained = result.status === 'warn' && EXPLAINED[result.id];
  if (explained) { warned++; console.log(`warn ${result.id} ${result.name} (explained: ${explained})`); continue; }
  failed++;
  const detail = result.response ? ` [${result.response.status}] ${await result.response.text().catch(() => '')}` : '';
  console.log(`${result.status.toUpperCase()} ${result.id} ${result.name}: ${result.reason}${detail}`);
}
console.log(`graphql-http audit: ${ok} ok, ${warned} explained warnings, ${failed} not passing`);
process.exit(failed ? 1 : 0);
